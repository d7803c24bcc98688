//! Which store a URL names, and opening it.

use std::path::{Path, PathBuf};

use presage_engine::StoreError;

use crate::{AdminStore, PostgresStore, SqliteStore};

/// A store location: `sqlite:PATH` or `postgres://…` / `postgresql://…`.
///
/// Its `Debug` form shows a PostgreSQL URL without its password, so logging a parsed
/// configuration never prints the fleet's credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

impl StoreUrl {
    /// Parses `text`; a bare path is taken as an SQLite file.
    pub fn parse(text: &str) -> Result<StoreUrl, StoreError> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(bad(
                    text,
                    "sqlite: needs a path (sqlite:/var/lib/presage/presage.db)",
                ));
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(text.to_owned()));
        }
        if text.contains("://") {
            return Err(bad(text, "unknown scheme (sqlite:PATH or postgres://…)"));
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(text)))
    }

    /// The default store of a data directory: SQLite at `DIR/presage.db`.
    pub fn in_data_dir(dir: &Path) -> StoreUrl {
        StoreUrl::Sqlite(dir.join("presage.db"))
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreUrl::Postgres(conn) => f
                .debug_tuple("Postgres")
                .field(&crate::postgres::redact(conn))
                .finish(),
        }
    }
}

fn bad(text: &str, why: &str) -> StoreError {
    StoreError {
        context: format!("store URL {text:?}"),
        source: why.into(),
    }
}

/// Opens the store `url` names, creating an SQLite file's directory when missing, or
/// connecting to a PostgreSQL database (and migrating its schema).
pub fn open(url: &StoreUrl) -> Result<Box<dyn AdminStore>, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError {
                    context: format!("creating {}", dir.display()),
                    source: Box::new(e),
                })?;
            }
            Ok(Box::new(SqliteStore::open(path)?))
        }
        StoreUrl::Postgres(conn) => Ok(Box::new(PostgresStore::connect(conn)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_schemes_are_named() {
        assert_eq!(
            StoreUrl::parse("sqlite:/x/p.db").unwrap(),
            StoreUrl::Sqlite("/x/p.db".into())
        );
        assert_eq!(
            StoreUrl::parse("p.db").unwrap(),
            StoreUrl::Sqlite("p.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgres://u@127.0.0.1:5432/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
        let e = StoreUrl::parse("mysql://x").unwrap_err().to_string();
        assert!(e.contains("mysql://x") && e.contains("scheme"), "{e}");
        assert!(StoreUrl::parse("sqlite:").is_err());
        let secret = StoreUrl::parse("postgres://u:hunter2@h/db").unwrap();
        assert_eq!(format!("{secret:?}"), r#"Postgres("postgres://u@h/db")"#);
    }
}
