//! Connection strings as they may be shown: every password removed.
//!
//! Store URLs end up in logs, error messages and `presage profiles` output, and a fleet's
//! URL usually carries the password of a shared role, so nothing that names a store ever
//! prints the string as given.

/// `conn` with its password removed, for messages.
///
/// URLs (`postgres://user:secret@host/db?password=…`) keep their shape: the redaction
/// mirrors how the driver splits them (credentials end at the first `@`, the password
/// after the first `:` in them), so whatever the driver would send as the password is
/// what is removed. Key-value strings (`host=… password=…`) are rebuilt from the
/// driver's parse without the password; one that does not parse is not shown at all.
pub(crate) fn redact(conn: &str) -> String {
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = conn.strip_prefix(scheme) {
            return format!("{scheme}{}", redact_url_rest(rest));
        }
    }
    match conn.parse::<postgres::Config>() {
        Ok(config) => describe_config(&config),
        Err(_) => "<an unparsable PostgreSQL connection string>".to_owned(),
    }
}

fn redact_url_rest(rest: &str) -> String {
    let (creds, after) = match rest.find('@') {
        Some(at) => (Some(&rest[..at]), &rest[at..]),
        None => (None, rest),
    };
    let mut out = String::new();
    if let Some(creds) = creds {
        out.push_str(creds.split_once(':').map_or(creds, |(user, _)| user));
    }
    // Query parameters may carry a password too (`?password=…`).
    match after.split_once('?') {
        Some((head, query)) => {
            out.push_str(head);
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| kv.split('=').next() != Some("password"))
                .collect();
            if !kept.is_empty() {
                out.push('?');
                out.push_str(&kept.join("&"));
            }
        }
        None => out.push_str(after),
    }
    out
}

/// A key-value description of `config` with everything but the password that names
/// where it points.
fn describe_config(config: &postgres::Config) -> String {
    let mut parts = Vec::new();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        parts.push(format!("host={}", hosts.join(",")));
    }
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        parts.push(format!("port={}", ports.join(",")));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_survive() {
        let cases = [
            (
                "postgres://presage:s3cret@db.example:5432/fleet",
                "postgres://presage@db.example:5432/fleet",
            ),
            (
                "postgresql://u:p%40ss@h/db?sslmode=disable&password=again&application_name=x",
                "postgresql://u@h/db?sslmode=disable&application_name=x",
            ),
            (
                "postgres://u@127.0.0.1:5433/db?password=only",
                "postgres://u@127.0.0.1:5433/db",
            ),
            ("postgres://h/db", "postgres://h/db"),
            (
                "host=10.0.0.1 port=5433 user=agent password='a b\\' c' dbname=fleet",
                "host=10.0.0.1 port=5433 user=agent dbname=fleet",
            ),
        ];
        for (given, shown) in cases {
            assert_eq!(redact(given), shown, "{given}");
        }
        let broken = redact("host=x password='unterminated");
        assert!(!broken.contains("unterminated"), "{broken}");
    }
}
