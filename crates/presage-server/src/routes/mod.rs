//! The JSON endpoints, by what they touch: the snapshot (`read`), the store (`store`),
//! the loop (`write`).

pub(crate) mod read;
pub(crate) mod store;
pub(crate) mod write;

/// Whether a concrete `path` matches a route `pattern` (`{name}` matching one
/// segment), for naming the allowed methods in a 405.
pub(crate) fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b || (a.starts_with('{') && !b.is_empty()) => {}
            _ => return false,
        }
    }
}
