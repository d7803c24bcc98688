//! Policies as configuration (`[[policies]]`): which workload gets which
//! [`WorkloadPolicy`], and when a time window changes it.
//!
//! - Each entry names a selector (`[policies.match]`) and the policy settings it changes;
//!   settings left out inherit from `[default_policy]` (table overlay, as the config file
//!   overlays the embedded defaults).
//! - The first entry whose selector matches wins; none: the default policy.
//! - `[[policies.windows]]` overlay the entry's settings while they are open; the first
//!   open window wins.
//! - A workload registered by `presage run` (or adopted explicitly) with a policy of its
//!   own keeps it when no entry matches. When one does, the entry's policy is the base
//!   and the run's *limits* are laid on top: its ceilings (`max`) and budget can only
//!   tighten the entry's, and `protected` is kept. Priority (weight, VIP) and the response
//!   ladder stay the operator's: a user's `presage run` flags cannot out-rank the
//!   operator's configuration.

mod select;
mod window;

use presage_core::{Resource, Timestamp};
use presage_policy::WorkloadPolicy;

pub use select::{MatchSpec, Selector, UserSpec, WorkloadFacts, uid_of_user};
pub use window::Schedule;

use crate::config::load::{Problem, Seg, deserialize, merge};

/// The name shown for workloads no entry matched.
pub const DEFAULT_NAME: &str = "default";
/// The name shown for a registered workload no entry matched (its own policy).
pub const REGISTRATION_NAME: &str = "registration";

/// One `[[policies]]` entry, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRule {
    /// Its unique name.
    pub name: String,
    /// Which workloads it applies to.
    pub selector: Selector,
    /// The policy outside every window.
    pub policy: WorkloadPolicy,
    /// Time windows, in order.
    pub windows: Vec<Window>,
}

/// One `[[policies.windows]]` entry, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Its name (`name = …`, else its hours, else its position).
    pub name: String,
    /// When it is open.
    pub schedule: Schedule,
    /// The policy while it is open.
    pub policy: WorkloadPolicy,
}

impl PolicyRule {
    /// The name and policy in force at `now`: the first open window's, else the rule's.
    /// The name is `rule@window` while a window is open.
    pub fn at(&self, now: Timestamp) -> (String, &WorkloadPolicy) {
        match self.windows.iter().find(|w| w.schedule.is_open(now)) {
            Some(w) => (format!("{}@{}", self.name, w.name), &w.policy),
            None => (self.name.clone(), &self.policy),
        }
    }
}

/// The index of the first rule matching `facts`.
pub fn select(rules: &[PolicyRule], facts: &WorkloadFacts) -> Option<usize> {
    rules.iter().position(|r| r.selector.matches(facts))
}

/// The name and policy of a workload at `now`: the first matching rule (at its open
/// window), with a registration's own policy (`own`) laid on top; no rule: `own`, else
/// `default`.
pub fn resolve(
    rules: &[PolicyRule],
    default: &WorkloadPolicy,
    facts: &WorkloadFacts,
    own: Option<&WorkloadPolicy>,
    now: Timestamp,
) -> (String, WorkloadPolicy) {
    match (select(rules, facts), own) {
        (Some(i), own) => {
            let (name, policy) = rules[i].at(now);
            let policy = match own {
                Some(own) => with_registration(policy, own),
                None => policy.clone(),
            };
            (name, policy)
        }
        (None, Some(own)) => (REGISTRATION_NAME.to_string(), own.clone()),
        (None, None) => (DEFAULT_NAME.to_string(), default.clone()),
    }
}

/// `base` with a registration's limits on top: the lower ceiling of each resource, the
/// registration's budget when it has one, and protection if either asks for it. If the
/// result does not validate (the run's ceiling under the rule's floor), the run's own
/// policy wins: its limits were the ones promised to the user.
pub fn with_registration(base: &WorkloadPolicy, own: &WorkloadPolicy) -> WorkloadPolicy {
    let mut p = base.clone();
    for r in Resource::ALL {
        if let Some(cap) = own.max[r] {
            let max = p.max[r].map_or(cap, |m| m.min(cap));
            p.max.set(r, Some(max));
            if p.min[r].is_some_and(|lo| lo > max) {
                p.min.set(r, Some(max));
            }
        }
    }
    if own.budget.is_some() {
        p.budget = own.budget;
    }
    p.protected |= own.protected;
    if p.validate().is_ok() { p } else { own.clone() }
}

/// Compiles the `policies` value of a config file against `base` (the merged
/// `[default_policy]` table), adding every problem to `problems`.
pub(crate) fn compile_all(
    value: Option<toml::Value>,
    base: &toml::Table,
    problems: &mut Vec<Problem>,
) -> Vec<PolicyRule> {
    let top = [Seg::Key("policies".into())];
    let items = match value {
        None => return Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(other) => {
            problems.push(Problem::at(
                &top,
                "",
                format!(
                    "must be an array of tables ([[policies]]), not a {}",
                    other.type_str()
                ),
            ));
            return Vec::new();
        }
    };
    let mut rules: Vec<PolicyRule> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let prefix = [top[0].clone(), Seg::Index(i)];
        let toml::Value::Table(table) = item else {
            problems.push(Problem::at(&prefix, "", "must be a table ([[policies]])"));
            continue;
        };
        if let Some(rule) = compile_one(&prefix, table, base, problems) {
            if rule.name == DEFAULT_NAME || rule.name == REGISTRATION_NAME {
                problems.push(Problem::at(
                    &prefix,
                    "name",
                    format!("{:?} is reserved; pick another name", rule.name),
                ));
            } else if rules.iter().any(|r| r.name == rule.name) {
                problems.push(Problem::at(
                    &prefix,
                    "name",
                    format!(
                        "{:?} is used by an earlier policy; names must be unique",
                        rule.name
                    ),
                ));
            }
            rules.push(rule);
        }
    }
    rules
}

fn take_string(
    table: &mut toml::Table,
    key: &str,
    prefix: &[Seg],
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match table.remove(key)? {
        toml::Value::String(s) => Some(s),
        other => {
            problems.push(Problem::at(
                prefix,
                key,
                format!("must be a string, not a {}", other.type_str()),
            ));
            None
        }
    }
}

/// `settings` overlaid on `base`, as a validated policy.
fn overlay_policy(
    prefix: &[Seg],
    base: &toml::Table,
    settings: toml::Table,
    problems: &mut Vec<Problem>,
) -> Option<(toml::Table, WorkloadPolicy)> {
    let mut table = base.clone();
    merge(&mut table, settings);
    let policy: WorkloadPolicy = match deserialize(prefix, table.clone()) {
        Ok(p) => p,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    if let Err(e) = policy.validate() {
        problems.push(Problem::at(
            prefix,
            &e.field,
            format!("{} {}", e.value, e.reason),
        ));
        return None;
    }
    Some((table, policy))
}

fn compile_one(
    prefix: &[Seg],
    mut table: toml::Table,
    base: &toml::Table,
    problems: &mut Vec<Problem>,
) -> Option<PolicyRule> {
    let before = problems.len();
    let name = take_string(&mut table, "name", prefix, problems);
    if name.as_deref().is_none_or(str::is_empty) && problems.len() == before {
        problems.push(Problem::at(
            prefix,
            "name",
            "every policy needs a non-empty `name`",
        ));
    }
    let mut match_path = prefix.to_vec();
    match_path.push(Seg::Key("match".into()));
    let selector = match table.remove("match") {
        None => Selector::new(MatchSpec::default()).ok(),
        Some(toml::Value::Table(t)) => match deserialize::<MatchSpec>(&match_path, t) {
            Ok(spec) => Selector::new(spec)
                .map_err(|(key, why)| problems.push(Problem::at(&match_path, &key, why)))
                .ok(),
            Err(p) => {
                problems.push(p);
                None
            }
        },
        Some(other) => {
            problems.push(Problem::at(
                prefix,
                "match",
                format!("must be a table, not a {}", other.type_str()),
            ));
            None
        }
    };
    let windows = table.remove("windows");
    let compiled = overlay_policy(prefix, base, table, problems);
    let windows = match (windows, &compiled) {
        (None, _) => Vec::new(),
        (Some(toml::Value::Array(items)), Some((rule_table, _))) => {
            compile_windows(prefix, items, rule_table, problems)
        }
        (Some(toml::Value::Array(_)), None) => Vec::new(),
        (Some(other), _) => {
            problems.push(Problem::at(
                prefix,
                "windows",
                format!(
                    "must be an array of tables ([[policies.windows]]), not a {}",
                    other.type_str()
                ),
            ));
            Vec::new()
        }
    };
    let (_, policy) = compiled?;
    Some(PolicyRule {
        name: name.filter(|n| !n.is_empty())?,
        selector: selector?,
        policy,
        windows,
    })
}

fn compile_windows(
    prefix: &[Seg],
    items: Vec<toml::Value>,
    rule_table: &toml::Table,
    problems: &mut Vec<Problem>,
) -> Vec<Window> {
    let mut out = Vec::new();
    for (j, item) in items.into_iter().enumerate() {
        let mut wp = prefix.to_vec();
        wp.extend([Seg::Key("windows".into()), Seg::Index(j)]);
        let toml::Value::Table(mut t) = item else {
            problems.push(Problem::at(
                &wp,
                "",
                "must be a table ([[policies.windows]])",
            ));
            continue;
        };
        let name = take_string(&mut t, "name", &wp, problems);
        let hours = take_string(&mut t, "hours", &wp, problems);
        let days = match t.remove("days") {
            None => Some(Vec::new()),
            Some(toml::Value::String(s)) => Some(vec![s]),
            Some(toml::Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Some(s),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>(),
            Some(_) => None,
        };
        let Some(days) = days else {
            problems.push(Problem::at(
                &wp,
                "days",
                "must be a string (\"mon-fri\") or an array of strings ([\"sat\", \"sun\"])",
            ));
            continue;
        };
        let offset = match t.remove("utc_offset_h") {
            None => 0.0,
            Some(toml::Value::Float(f)) => f,
            Some(toml::Value::Integer(i)) => i as f64,
            Some(other) => {
                problems.push(Problem::at(
                    &wp,
                    "utc_offset_h",
                    format!("must be a number of hours, not a {}", other.type_str()),
                ));
                continue;
            }
        };
        let schedule = match Schedule::new(&days, hours.as_deref(), offset) {
            Ok(s) => s,
            Err((key, why)) => {
                problems.push(Problem::at(&wp, key, why));
                continue;
            }
        };
        if t.is_empty() {
            problems.push(Problem::at(
                &wp,
                "",
                "changes no setting (add e.g. `weight`, `target_risk` or `max`)",
            ));
            continue;
        }
        let Some((_, policy)) = overlay_policy(&wp, rule_table, t, problems) else {
            continue;
        };
        out.push(Window {
            name: name.or(hours).unwrap_or_else(|| format!("window{j}")),
            schedule,
            policy,
        });
    }
    out
}

#[cfg(test)]
mod tests;
