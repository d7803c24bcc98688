use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// A running instance of a workload: a cgroup path, a trace's VM id, a `presage run` child.
///
/// Cheap to clone (shared string), because every sample carries one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkloadId(Arc<str>);

impl WorkloadId {
    /// A workload id; empty or all-whitespace names are rejected.
    pub fn new(name: impl AsRef<str>) -> Result<Self, CoreError> {
        let name = name.as_ref();
        if name.trim().is_empty() {
            return Err(CoreError::Empty {
                what: "workload id",
            });
        }
        Ok(WorkloadId(Arc::from(name)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are clones of one id (a pointer comparison: a cheap first check
    /// before comparing text on hot paths).
    pub fn same_instance(&self, other: &WorkloadId) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl TryFrom<String> for WorkloadId {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        WorkloadId::new(value)
    }
}

impl From<WorkloadId> for String {
    fn from(id: WorkloadId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a workload *is*, as opposed to where it runs: the key of its behavioural profile.
///
/// Two runs of the same code version, with the same inputs, by the same user share a
/// profile; a new run of known code starts from it (DESIGN.md "Identity and profiles").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawWorkloadKey")]
pub struct WorkloadKey {
    code_id: String,
    code_version: String,
    input_hash: String,
    user: String,
}

#[derive(Deserialize)]
struct RawWorkloadKey {
    code_id: String,
    #[serde(default)]
    code_version: String,
    #[serde(default)]
    input_hash: String,
    #[serde(default)]
    user: String,
}

impl TryFrom<RawWorkloadKey> for WorkloadKey {
    type Error = CoreError;
    fn try_from(raw: RawWorkloadKey) -> Result<Self, Self::Error> {
        WorkloadKey::new(raw.code_id, raw.code_version, raw.input_hash, raw.user)
    }
}

impl WorkloadKey {
    /// A key. `code_id` (a hash of the executable or image) is required; the version,
    /// input-parameters hash and user may be empty when unknown.
    pub fn new(
        code_id: impl Into<String>,
        code_version: impl Into<String>,
        input_hash: impl Into<String>,
        user: impl Into<String>,
    ) -> Result<Self, CoreError> {
        let code_id = code_id.into();
        if code_id.trim().is_empty() {
            return Err(CoreError::Empty {
                what: "workload key code_id",
            });
        }
        Ok(WorkloadKey {
            code_id,
            code_version: code_version.into(),
            input_hash: input_hash.into(),
            user: user.into(),
        })
    }

    /// A key that knows only the code (no version, inputs or user).
    pub fn for_code(code_id: impl Into<String>) -> Result<Self, CoreError> {
        WorkloadKey::new(code_id, "", "", "")
    }

    /// Hash of the executable or image.
    pub fn code_id(&self) -> &str {
        &self.code_id
    }

    /// The code's version, or empty.
    pub fn code_version(&self) -> &str {
        &self.code_version
    }

    /// Hash of the input parameters, or empty.
    pub fn input_hash(&self) -> &str {
        &self.input_hash
    }

    /// The user running the code, or empty.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        write!(
            f,
            "{}@{}/{}/{}",
            self.code_id,
            dash(&self.code_version),
            dash(&self.input_hash),
            dash(&self.user)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ids_are_rejected() {
        assert_eq!(
            WorkloadId::new("  "),
            Err(CoreError::Empty {
                what: "workload id"
            })
        );
        assert_eq!(
            WorkloadKey::for_code(""),
            Err(CoreError::Empty {
                what: "workload key code_id"
            })
        );
        assert!(serde_json::from_str::<WorkloadId>(r#""""#).is_err());
        assert!(serde_json::from_str::<WorkloadKey>(r#"{"code_id":""}"#).is_err());
    }

    #[test]
    fn key_round_trips_and_displays() -> Result<(), Box<dyn std::error::Error>> {
        let key = WorkloadKey::new("sha256:ab", "1.2", "", "alice")?;
        assert_eq!(key.to_string(), "sha256:ab@1.2/-/alice");
        let json = serde_json::to_string(&key)?;
        assert_eq!(serde_json::from_str::<WorkloadKey>(&json)?, key);
        Ok(())
    }
}
