//! Reading a config file so that every problem names its line, column and key.
//!
//! The file is overlaid on the embedded defaults as TOML tables (a file names only the
//! keys it changes), which throws the file's positions away. So problems are found on
//! the merged tables as *key paths* (`policies[1].windows[0].hours`) and then located in
//! the file's own syntax tree, which keeps a span for every key. A key the file does not
//! contain (a problem in an inherited value) is reported at the nearest enclosing key the
//! file does contain.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::de::{DeTable, DeValue};

use super::{AgentConfig, DEFAULT_CONFIG_TOML};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A problem found on the merged tables, not yet located in the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    /// Where, as a key path from the document root.
    pub path: Vec<Seg>,
    /// What is wrong.
    pub reason: String,
}

impl Problem {
    /// A problem at the key path `dotted` (`a.b.c`), under `prefix`.
    pub(crate) fn at(prefix: &[Seg], dotted: &str, reason: impl Into<String>) -> Problem {
        let mut path = prefix.to_vec();
        path.extend(
            dotted
                .split('.')
                .filter(|k| !k.is_empty())
                .map(|k| Seg::Key(k.to_string())),
        );
        Problem {
            path,
            reason: reason.into(),
        }
    }
}

/// A key path as written in messages: `policies[1].windows[0].hours`.
pub(crate) fn render_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// One problem of a config file, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigProblem {
    /// 1-based line in the file, when the problem is in it.
    pub line: Option<usize>,
    /// 1-based column (characters).
    pub column: Option<usize>,
    /// The key path (empty for a syntax error that is not at a key).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file (or `<embedded defaults>`).
    pub file: PathBuf,
    /// The problems, in file order where they have a line.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigErrors {
    /// One `FILE:LINE:COL: key `a.b`: reason` line per problem, as compilers print them
    /// (editors jump to them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let (Some(l), Some(c)) = (p.line, p.column) {
                write!(f, ":{l}:{c}")?;
            }
            if p.key.is_empty() {
                write!(f, ": {}", p.reason)?;
            } else {
                write!(f, ": key `{}`: {}", p.key, p.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parses `text` (from `origin`) over the embedded defaults: the config, or every
/// problem found, located.
pub(crate) fn parse(text: &str, origin: &Path) -> Result<AgentConfig, ConfigErrors> {
    let fail = |problems: Vec<ConfigProblem>| ConfigErrors {
        file: origin.to_path_buf(),
        problems,
    };
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(fail(
            syntax
                .iter()
                .map(|e| at_span(text, e.span(), String::new(), e.message().to_string()))
                .collect(),
        ));
    }
    let user: toml::Table = toml::from_str(text).map_err(|e| {
        fail(vec![at_span(
            text,
            e.span(),
            String::new(),
            e.message().to_string(),
        )])
    })?;
    let mut merged: toml::Table =
        toml::from_str(DEFAULT_CONFIG_TOML).map_err(|e| ConfigErrors {
            file: PathBuf::from("<embedded defaults>"),
            problems: vec![at_span(
                DEFAULT_CONFIG_TOML,
                e.span(),
                String::new(),
                e.message().to_string(),
            )],
        })?;
    let (config, problems) = build(&mut merged, user);
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            let root = DeValue::Table(doc.into_inner());
            let mut located: Vec<ConfigProblem> = problems
                .into_iter()
                .map(|p| {
                    let span = locate(&root, &p.path);
                    at_span(text, span, render_path(&p.path), p.reason)
                })
                .collect();
            located.sort_by_key(|p| (p.line.unwrap_or(0), p.column.unwrap_or(0)));
            located.dedup();
            Err(fail(located))
        }
    }
}

/// Overlays `user` on `merged` (the defaults) and builds the config: everything that
/// deserialises, validated, with the policies compiled. Returns every problem found.
fn build(merged: &mut toml::Table, mut user: toml::Table) -> (Option<AgentConfig>, Vec<Problem>) {
    // `[[policies]]` overlay `[default_policy]`, not the embedded defaults: they are
    // taken out before the merge and compiled against the merged default policy.
    let policies = user.remove("policies");
    merge(merged, user);
    let mut problems = Vec::new();
    let config = match serde_path_to_error::deserialize::<_, AgentConfig>(toml::Value::Table(
        merged.clone(),
    )) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(from_serde(&[], e));
            None
        }
    };
    if let Some(c) = &config {
        problems.extend(c.problems());
    }
    let base = match merged.get("default_policy") {
        Some(toml::Value::Table(t)) => t.clone(),
        _ => toml::Table::new(),
    };
    let rules = crate::policies::compile_all(policies, &base, &mut problems);
    (
        config.map(|mut c| {
            c.policies = rules;
            c
        }),
        problems,
    )
}

/// A serde error at the path `path_to_error` tracked, under `prefix`. An unknown key is
/// reported at that key (serde names it only in the message).
pub(crate) fn from_serde(
    prefix: &[Seg],
    e: serde_path_to_error::Error<toml::de::Error>,
) -> Problem {
    let mut path = prefix.to_vec();
    for seg in e.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => path.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    let message = e.inner().message().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        // path_to_error usually has the key already; add it where it does not.
        let key = Seg::Key(rest[..end].to_string());
        if path.last() != Some(&key) {
            path.push(key);
        }
    }
    Problem {
        path,
        reason: message,
    }
}

/// Deserialises `table` as a `T`, every problem under `prefix`.
pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(
    prefix: &[Seg],
    table: toml::Table,
) -> Result<T, Problem> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| from_serde(prefix, e))
}

/// The span of the deepest key of `path` the document contains.
fn locate(root: &DeValue<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let mut here = root;
    let mut best = None;
    for seg in path {
        match (seg, here) {
            (Seg::Key(k), DeValue::Table(t)) => {
                let Some((key, value)) = t.iter().find(|(key, _)| key.get_ref() == k) else {
                    break;
                };
                best = Some(key.span());
                here = value.get_ref();
            }
            (Seg::Index(i), DeValue::Array(a)) => {
                let Some(item) = a.get(*i) else {
                    break;
                };
                // An inline value's span is the value itself; a `[[table]]`'s is its
                // body, which starts right after its header: either points at its line.
                best = Some(item.span());
                here = item.get_ref();
            }
            _ => break,
        }
    }
    best
}

fn at_span(text: &str, span: Option<Range<usize>>, key: String, reason: String) -> ConfigProblem {
    let (line, column) = match span {
        Some(r) => {
            let (l, c) = line_col(text, r.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    ConfigProblem {
        line,
        column,
        key,
        reason,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Overlays `overlay` on `base`, table by table, so a file can change one key of a
/// nested table without restating the others.
pub(crate) fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The single problem of `text`, as printed.
    fn error(text: &str) -> String {
        let e = parse(text, Path::new("p.toml")).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        e.to_string()
    }

    #[test]
    fn an_unknown_key_is_named_at_its_line() {
        let e = error("mode = \"enforce\"\n\npolcy = \"x\"\n");
        assert!(
            e.starts_with("p.toml:3:1: key `polcy`: unknown field `polcy`"),
            "{e}"
        );
        let e = error("[default_policy.response]\nmax_rung = \"kill\"\ncooldown = 3\n");
        assert!(
            e.starts_with("p.toml:3:1: key `default_policy.response.cooldown`"),
            "{e}"
        );
        let e = error("[[policies]]\nname = \"a\"\n[policies.match]\nunti = \"x.service\"\n");
        assert!(
            e.starts_with("p.toml:4:1: key `policies[0].match.unti`"),
            "{e}"
        );
        let e = error("[[policies]]\nname = \"a\"\nwieght = 2\n");
        assert!(e.starts_with("p.toml:3:1: key `policies[0].wieght`"), "{e}");
    }

    #[test]
    fn a_bad_value_is_named_at_its_line() {
        let e = error("# c\nmode = \"loud\"\n");
        assert!(
            e.starts_with("p.toml:2:1: key `mode`:") && e.contains("loud"),
            "{e}"
        );
        let e = error("[api]\nhistory_points = \"many\"\n");
        assert!(e.starts_with("p.toml:2:1: key `api.history_points`"), "{e}");
        let e = error("[[policies]]\nname = \"a\"\nweight = \"heavy\"\n");
        assert!(e.starts_with("p.toml:3:1: key `policies[0].weight`"), "{e}");
    }

    #[test]
    fn semantic_errors_carry_the_line_of_their_key() {
        let e = error("\n\ninterval_s = 0.0\n");
        assert!(
            e.starts_with("p.toml:3:1: key `interval_s`: 0 is outside"),
            "{e}"
        );
        let e = error("[default_policy]\ntarget_risk = 1.5\n");
        assert!(
            e.starts_with("p.toml:2:1: key `default_policy.target_risk`"),
            "{e}"
        );
        let text = "[[policies]]\nname = \"a\"\nmatch = { cgroup = \"a/[b\" }\n\
                    [[policies.windows]]\ndays = \"mon-fri\"\nhours = \"9-18\"\nweight = 2\n";
        let e = parse(text, Path::new("p.toml")).unwrap_err();
        let lines: Vec<String> = e.to_string().lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 2, "{e}");
        assert!(lines[0].starts_with("p.toml:3:"), "{e}");
        assert!(
            lines[0].contains("key `policies[0].match.cgroup`: bad glob"),
            "{e}"
        );
        assert!(
            lines[1].starts_with("p.toml:6:1: key `policies[0].windows[0].hours`"),
            "{e}"
        );
        let e = error(
            "[[policies]]\nname = \"a\"\n[[policies.windows]]\ndays = \"noday\"\nweight = 2\n",
        );
        assert!(
            e.starts_with("p.toml:4:1: key `policies[0].windows[0].days`"),
            "{e}"
        );
        let e = error(
            "[[policies]]\nname = \"a\"\n[policies.min]\ncpu = 4.0\n[policies.max]\ncpu = 2.0\n",
        );
        assert!(
            e.starts_with("p.toml:4:1: key `policies[0].min.cpu`"),
            "{e}"
        );
    }

    #[test]
    fn a_problem_in_an_inherited_value_points_at_the_policy() {
        // The default's ceiling is below the policy's floor: the file has no
        // `policies[0].max`, so the policy's own header line is the nearest.
        let e = error(
            "[default_policy.max]\ncpu = 1.0\n\n[[policies]]\nname = \"a\"\nmin = { cpu = 2.0 }\n",
        );
        assert!(e.contains("key `policies[0].min.cpu`"), "{e}");
        assert!(e.starts_with("p.toml:6:"), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_line_and_column() {
        let e = parse(
            "mode = \"enforce\"\ninterval_s = = 1\n",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("p.toml:2:"), "{e}");
        let e = parse("a = 1\na = 2\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:2:"), "{e}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
    }
}
