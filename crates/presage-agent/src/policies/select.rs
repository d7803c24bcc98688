//! A policy's selector (`[policies.match]`): which workloads it applies to.

use std::collections::BTreeMap;
use std::ffi::CString;

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

/// What a policy's `match` table says, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchSpec {
    /// Glob over the cgroup path relative to the hierarchy root (`*` stays within one
    /// path component, `**` crosses them).
    pub cgroup: Option<String>,
    /// Glob over the systemd unit: the last component of a cgroup ending in `.service` or
    /// `.scope` (`nginx.service`, `docker-*.scope`).
    pub unit: Option<String>,
    /// The user of the workload's first process: a name or a numeric uid.
    pub user: Option<UserSpec>,
    /// The code id, or a prefix of it (a short hash, as `presage profiles` prints).
    pub code_id: Option<String>,
    /// Labels that must all be present with exactly these values.
    pub labels: BTreeMap<String, String>,
}

/// A user as a name or a uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserSpec {
    /// `user = 1000`.
    Uid(u32),
    /// `user = "www-data"` (or `"1000"`).
    Name(String),
}

/// What a selector looks at in a workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadFacts {
    /// The cgroup, relative to the hierarchy root.
    pub cgroup: String,
    /// The uid of its first process, as a decimal string (empty when unknown).
    pub user: String,
    /// Its code id.
    pub code_id: String,
    /// Its labels (registration labels plus the automatic `kind`).
    pub labels: BTreeMap<String, String>,
}

/// A compiled selector.
#[derive(Debug, Clone)]
pub struct Selector {
    spec: MatchSpec,
    cgroup: Option<GlobMatcher>,
    unit: Option<GlobMatcher>,
    uid: Option<String>,
}

impl PartialEq for Selector {
    /// The compiled forms follow from the spec (and the host's user table).
    fn eq(&self, other: &Selector) -> bool {
        self.spec == other.spec && self.uid == other.uid
    }
}

fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| format!("bad glob {pattern:?}: {}", e.kind()))
}

impl Selector {
    /// Compiles `spec`. The error is `(key within the match table, reason)`.
    pub fn new(spec: MatchSpec) -> Result<Selector, (String, String)> {
        let cgroup = spec
            .cgroup
            .as_deref()
            .map(|p| glob(p.trim_start_matches('/')))
            .transpose()
            .map_err(|e| ("cgroup".to_string(), e))?;
        let unit = spec
            .unit
            .as_deref()
            .map(glob)
            .transpose()
            .map_err(|e| ("unit".to_string(), e))?;
        let uid = match &spec.user {
            None => None,
            Some(UserSpec::Uid(u)) => Some(u.to_string()),
            Some(UserSpec::Name(n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                Some(n.clone())
            }
            // Resolved once, when the policies are loaded: a typo is reported by
            // `presage config check` instead of silently matching nothing.
            Some(UserSpec::Name(n)) => Some(
                uid_of_user(n)
                    .ok_or_else(|| ("user".to_string(), format!("no user {n:?} on this host")))?
                    .to_string(),
            ),
        };
        if spec.code_id.as_deref() == Some("") {
            return Err((
                "code_id".into(),
                "is empty (leave it out to match any)".into(),
            ));
        }
        Ok(Selector {
            spec,
            cgroup,
            unit,
            uid,
        })
    }

    /// The selector as written.
    pub fn spec(&self) -> &MatchSpec {
        &self.spec
    }

    /// Whether every condition holds for `w` (an empty selector matches everything).
    pub fn matches(&self, w: &WorkloadFacts) -> bool {
        let path = w.cgroup.trim_start_matches('/');
        if let Some(g) = &self.cgroup
            && !g.is_match(path)
        {
            return false;
        }
        if let Some(g) = &self.unit {
            let last = path.rsplit('/').next().unwrap_or("");
            let is_unit = last.ends_with(".service") || last.ends_with(".scope");
            if !(is_unit && g.is_match(last)) {
                return false;
            }
        }
        if let Some(uid) = &self.uid
            && &w.user != uid
        {
            return false;
        }
        if let Some(prefix) = &self.spec.code_id
            && !w.code_id.starts_with(prefix.as_str())
        {
            return false;
        }
        self.spec
            .labels
            .iter()
            .all(|(k, v)| w.labels.get(k) == Some(v))
    }

    /// A one-line description (`unit=nginx.service user=33`), `*` when empty.
    pub fn describe(&self) -> String {
        let s = &self.spec;
        let mut parts = Vec::new();
        if let Some(c) = &s.cgroup {
            parts.push(format!("cgroup={c}"));
        }
        if let Some(u) = &s.unit {
            parts.push(format!("unit={u}"));
        }
        if let Some(u) = &s.user {
            let shown = match u {
                UserSpec::Uid(n) => n.to_string(),
                UserSpec::Name(n) => n.clone(),
            };
            parts.push(format!("user={shown}"));
        }
        if let Some(c) = &s.code_id {
            parts.push(format!("code_id={c}*"));
        }
        for (k, v) in &s.labels {
            parts.push(format!("label.{k}={v}"));
        }
        if parts.is_empty() {
            "*".to_string()
        } else {
            parts.join(" ")
        }
    }
}

/// The uid of user `name` from the host's user database (files, LDAP, whatever NSS is
/// configured with).
pub fn uid_of_user(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value of this plain C struct; getpwnam_r
    // fills it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is NUL-terminated, `buf` is
    // writable for its length, and `pwd`/`result` are live locals.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pwd.pw_uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(cgroup: &str, user: &str, code: &str, labels: &[(&str, &str)]) -> WorkloadFacts {
        WorkloadFacts {
            cgroup: cgroup.into(),
            user: user.into(),
            code_id: code.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn sel(toml_text: &str) -> Selector {
        Selector::new(toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn each_selector_kind() {
        let web = facts(
            "system.slice/nginx.service",
            "33",
            "abcdef",
            &[("kind", "service")],
        );
        let job = facts("presage/run-x-1", "1000", "123456", &[("team", "ml")]);
        let cases = [
            ("cgroup = \"system.slice/*\"", true, false),
            ("cgroup = \"**/run-*\"", false, true),
            ("cgroup = \"*\"", false, false),
            ("unit = \"nginx.service\"", true, false),
            ("unit = \"*.service\"", true, false),
            ("unit = \"run-*\"", false, false),
            ("user = 33", true, false),
            ("user = \"1000\"", false, true),
            ("user = \"root\"", false, false),
            ("code_id = \"abc\"", true, false),
            ("code_id = \"123456\"", false, true),
            ("labels = { team = \"ml\" }", false, true),
            ("labels = { kind = \"service\" }", true, false),
            ("labels = { team = \"web\" }", false, false),
            ("", true, true),
        ];
        for (text, on_web, on_job) in cases {
            let s = sel(text);
            assert_eq!(s.matches(&web), on_web, "{text} on web");
            assert_eq!(s.matches(&job), on_job, "{text} on job");
        }
    }

    #[test]
    fn all_conditions_must_hold() {
        let s = sel("unit = \"*.service\"\nuser = 0\nlabels = { kind = \"service\" }");
        let ok = facts("system.slice/a.service", "0", "x", &[("kind", "service")]);
        assert!(s.matches(&ok));
        for bad in [
            facts("system.slice/a.scope", "0", "x", &[("kind", "service")]),
            facts("system.slice/a.service", "1", "x", &[("kind", "service")]),
            facts("system.slice/a.service", "0", "x", &[]),
        ] {
            assert!(!s.matches(&bad), "{bad:?}");
        }
    }

    #[test]
    fn user_names_resolve_and_unknown_ones_are_errors() {
        assert_eq!(uid_of_user("root"), Some(0));
        let s = sel("user = \"root\"");
        assert!(s.matches(&facts("a", "0", "x", &[])));
        let spec: MatchSpec = toml::from_str("user = \"no-such-user-presage\"").unwrap();
        let (key, why) = Selector::new(spec).unwrap_err();
        assert_eq!(key, "user");
        assert!(why.contains("no-such-user-presage"), "{why}");
        let spec: MatchSpec = toml::from_str("cgroup = \"a/[b\"").unwrap();
        assert_eq!(Selector::new(spec).unwrap_err().0, "cgroup");
    }
}
