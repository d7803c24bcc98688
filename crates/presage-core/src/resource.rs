use std::fmt;
use std::str::FromStr;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::CoreError;

/// A resource presage forecasts and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// CPU, in cores (1.0 = one core busy for the whole interval).
    Cpu,
    /// Memory working set, in bytes.
    Memory,
    /// Block-device reads, in bytes per second.
    IoRead,
    /// Block-device writes, in bytes per second.
    IoWrite,
    /// Network receive, in bytes per second.
    NetRx,
    /// Network transmit, in bytes per second.
    NetTx,
}

/// The unit a [`Resource`] is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// CPU cores.
    Cores,
    /// Bytes.
    Bytes,
    /// Bytes per second.
    BytesPerSecond,
}

impl Resource {
    /// Every resource, in the order [`ResourceMap`] stores them.
    pub const ALL: [Resource; 6] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::IoRead,
        Resource::IoWrite,
        Resource::NetRx,
        Resource::NetTx,
    ];

    /// The number of resources.
    pub const COUNT: usize = Self::ALL.len();

    /// The position of this resource in [`Resource::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The unit this resource is measured in.
    pub const fn unit(self) -> Unit {
        match self {
            Resource::Cpu => Unit::Cores,
            Resource::Memory => Unit::Bytes,
            _ => Unit::BytesPerSecond,
        }
    }

    /// The snake_case name used in JSON, TOML and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::IoRead => "io_read",
            Resource::IoWrite => "io_write",
            Resource::NetRx => "net_rx",
            Resource::NetTx => "net_tx",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Resource {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| CoreError::UnknownName {
                what: "resource",
                name: s.to_owned(),
                expected: "cpu, memory, io_read, io_write, net_rx, net_tx",
            })
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Cores => "cores",
            Unit::Bytes => "bytes",
            Unit::BytesPerSecond => "bytes/s",
        })
    }
}

/// One value per [`Resource`], stored inline (no allocation, indexable by resource).
///
/// Serialised as a JSON object keyed by resource name; with `Option` values, absent
/// resources are left out.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceMap<T>([T; Resource::COUNT]);

impl<T> ResourceMap<T> {
    /// Builds a map by calling `f` for every resource.
    pub fn from_fn(mut f: impl FnMut(Resource) -> T) -> Self {
        ResourceMap(std::array::from_fn(|i| f(Resource::ALL[i])))
    }

    /// The value for `resource`.
    pub fn get(&self, resource: Resource) -> &T {
        &self.0[resource.index()]
    }

    /// The value for `resource`, mutably.
    pub fn get_mut(&mut self, resource: Resource) -> &mut T {
        &mut self.0[resource.index()]
    }

    /// Replaces the value for `resource`.
    pub fn set(&mut self, resource: Resource, value: T) {
        self.0[resource.index()] = value;
    }

    /// Iterates `(resource, value)` pairs in [`Resource::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Resource, &T)> {
        Resource::ALL.into_iter().zip(self.0.iter())
    }

    /// Applies `f` to every value.
    pub fn map<U>(&self, mut f: impl FnMut(Resource, &T) -> U) -> ResourceMap<U> {
        ResourceMap::from_fn(|r| f(r, self.get(r)))
    }
}

impl<T> ResourceMap<Option<T>> {
    /// An empty map.
    pub fn none() -> Self {
        ResourceMap(std::array::from_fn(|_| None))
    }

    /// Iterates over the resources that have a value.
    pub fn present(&self) -> impl Iterator<Item = (Resource, &T)> {
        self.iter().filter_map(|(r, v)| v.as_ref().map(|v| (r, v)))
    }
}

impl<T> std::ops::Index<Resource> for ResourceMap<T> {
    type Output = T;
    fn index(&self, resource: Resource) -> &T {
        self.get(resource)
    }
}

impl<T> std::ops::IndexMut<Resource> for ResourceMap<T> {
    fn index_mut(&mut self, resource: Resource) -> &mut T {
        self.get_mut(resource)
    }
}

/// How a value decides whether it is written out; `Option::None` is left out of the map.
pub trait MapEntry {
    /// Whether the entry is absent and should not be serialised.
    fn is_absent(&self) -> bool {
        false
    }
}

impl<T> MapEntry for Option<T> {
    fn is_absent(&self) -> bool {
        self.is_none()
    }
}
impl MapEntry for f64 {}
impl MapEntry for u64 {}
impl MapEntry for u32 {}
impl MapEntry for usize {}
impl MapEntry for bool {}

impl<T: Serialize + MapEntry> Serialize for ResourceMap<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let present = self.0.iter().filter(|v| !v.is_absent()).count();
        let mut map = serializer.serialize_map(Some(present))?;
        for (resource, value) in self.iter() {
            if !value.is_absent() {
                map.serialize_entry(resource.name(), value)?;
            }
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for ResourceMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for MapVisitor<T> {
            type Value = ResourceMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object keyed by resource name (cpu, memory, io_read, …)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut out = ResourceMap::<T>::from_fn(|_| T::default());
                while let Some(key) = access.next_key::<String>()? {
                    let resource: Resource = key.parse().map_err(serde::de::Error::custom)?;
                    out.set(resource, access.next_value()?);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Resource::ALL {
            assert_eq!(r.name().parse::<Resource>(), Ok(r));
            assert_eq!(Resource::ALL[r.index()], r);
        }
        assert!(matches!(
            "gpu".parse::<Resource>(),
            Err(CoreError::UnknownName { .. })
        ));
    }

    #[test]
    fn optional_map_skips_absent_entries() -> Result<(), serde_json::Error> {
        let mut m = ResourceMap::<Option<f64>>::none();
        m.set(Resource::Memory, Some(5.0));
        let json = serde_json::to_string(&m)?;
        assert_eq!(json, r#"{"memory":5.0}"#);
        let back: ResourceMap<Option<f64>> = serde_json::from_str(&json)?;
        assert_eq!(back, m);
        Ok(())
    }

    #[test]
    fn unknown_resource_key_is_rejected() {
        let err = serde_json::from_str::<ResourceMap<Option<f64>>>(r#"{"gpu":1}"#);
        assert!(err.is_err_and(|e| e.to_string().contains("gpu")));
    }
}
