//! The agent's settings: a TOML file over embedded defaults, so the agent runs with no
//! file at all and a file needs only the keys it changes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use presage_linux::DiscoveryConfig;
use presage_policy::WorkloadPolicy;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::policies::PolicyRule;

pub(crate) mod load;

pub use load::{ConfigErrors, ConfigProblem};

/// The embedded defaults, also shipped as the reference config (`presage agent
/// --print-config`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_agent.toml");

/// What the agent may do to the workloads it manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Sample and learn profiles; never write a limit and record no decisions.
    Observe,
    /// Compute decisions and record them, without applying them.
    Recommend,
    /// Apply decisions to the cgroups.
    Enforce,
}

impl Mode {
    /// The name used in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Recommend => "recommend",
            Mode::Enforce => "enforce",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "observe" => Ok(Mode::Observe),
            "recommend" => Ok(Mode::Recommend),
            "enforce" => Ok(Mode::Enforce),
            other => Err(format!(
                "unknown mode {other:?} (expected observe, recommend or enforce)"
            )),
        }
    }
}

/// Everything the agent reads from its config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// What the agent may do.
    pub mode: Mode,
    /// Seconds between reads of every managed cgroup.
    pub interval_s: f64,
    /// Seconds between allocation decisions per workload.
    pub decide_every_s: u32,
    /// Seconds between walks of the cgroup tree.
    pub rediscover_every_s: u32,
    /// Restore adopted limits on shutdown.
    pub restore_on_exit: bool,
    /// The allocation rule's name.
    pub policy: String,
    /// The rule's knob; `None` keeps its default.
    #[serde(default)]
    pub knob: Option<f64>,
    /// Ledger, decision log, registrations and (by default) the profile store. Left
    /// out: `/var/lib/presage` as root, else the user's data directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The profile store: `sqlite:PATH` or `postgres://…`; left out, SQLite at
    /// `data_dir/presage.db`.
    #[serde(default)]
    pub store: Option<String>,
    /// Keep every sample and every finished run in the store (for retraining and the
    /// dashboard's history).
    #[serde(default = "yes")]
    pub record_samples: bool,
    /// How long samples are kept at each resolution.
    #[serde(default)]
    pub retention: presage_engine::Retention,
    /// The cgroup filesystem root.
    pub cgroup_root: PathBuf,
    /// The mount table the layout is detected from.
    pub mountinfo: PathBuf,
    /// The proc filesystem (process identity, network namespaces).
    pub proc_root: PathBuf,
    /// Read per-namespace network counters.
    pub network: bool,
    /// Forecast horizons, seconds.
    pub horizons_s: Vec<u32>,
    /// Which cgroups are workloads.
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// The policy of every workload without a more specific one.
    #[serde(default)]
    pub default_policy: WorkloadPolicy,
    /// presage's allocator at the live cadence.
    #[serde(default)]
    pub presage: PresageTuning,
    /// Where the response ladder's alerts are POSTed, and how (the ladder itself is per
    /// policy: `[default_policy.response]`).
    #[serde(default)]
    pub response: crate::webhook::WebhookConfig,
    /// The HTTP API, `/metrics` and the dashboard.
    #[serde(default)]
    pub api: ApiConfig,
    /// `[[policies]]`: per-workload policies, first match wins (compiled by the loader,
    /// which takes them out of the tables before the rest is deserialised).
    #[serde(skip)]
    pub policies: Vec<PolicyRule>,
    /// The file this was read from (`None`: the embedded defaults or a string).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Where and how the agent serves its HTTP surface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `ADDR:PORT` to listen on; empty turns the server off. Loopback by default: reads
    /// are open to local clients only.
    pub listen: String,
    /// The bearer token every mutating request (and every request from off the host)
    /// must carry. Prefer `token_file`: a config file is often world-readable.
    pub token: Option<String>,
    /// A file holding the token (its first line).
    pub token_file: Option<PathBuf>,
    /// Chart points kept per workload (one per tick: 900 is 15 minutes at 1 s).
    pub history_points: usize,
    /// At most this many workloads get per-workload series on `/metrics` (the riskiest
    /// first), bounding the label cardinality a scrape can create.
    pub metrics_max_workloads: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:9477".to_string(),
            token: None,
            token_file: None,
            history_points: 900,
            metrics_max_workloads: 1000,
        }
    }
}

impl ApiConfig {
    /// The token, from `token` or the first line of `token_file`; `None` when neither
    /// is set (mutating requests are then refused).
    pub fn read_token(&self) -> Result<Option<String>, AgentError> {
        if let Some(t) = self.token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(t.clone()));
        }
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Io {
            context: format!("reading the API token file {}", path.display()),
            source,
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.is_empty() {
            return Err(AgentError::Config {
                file: path.clone(),
                message: "field `api.token_file`: the file's first line is empty".into(),
            });
        }
        Ok(Some(token))
    }
}

/// How the presage rule is tuned for a host sampled every second (its defaults are
/// tuned on 5-minute traces).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresageTuning {
    /// Add the periodic model (periods of seconds to minutes) to the ensemble.
    pub periodic: bool,
    /// How far ahead a predicted level shift is provisioned (0: only until the next
    /// decision — the periodic model raises just in time, and holding for a longer
    /// look-ahead would pin limits at every cycle's peak).
    pub lookahead_s: u32,
    /// Seconds after an OOM or throttling repair during which that resource is not
    /// released.
    pub repair_hold_s: u32,
    /// Seconds a newly adopted workload keeps the limits it came with while the models
    /// learn it (long enough to see a few cycles of a periodic workload).
    pub warmup_s: u32,
    /// Memory is raised to this × the limit it was killed at after an OOM kill.
    pub memory_repair_ratio: f64,
}

impl Default for PresageTuning {
    fn default() -> Self {
        PresageTuning {
            periodic: true,
            lookahead_s: 0,
            repair_hold_s: 120,
            warmup_s: 300,
            memory_repair_ratio: 1.5,
        }
    }
}

fn yes() -> bool {
    true
}

/// `/var/lib/presage` for root (a system service's state), else the user's data
/// directory (`$XDG_DATA_HOME/presage`, `~/.local/share/presage`), so a user's
/// `presage run` never needs root to remember what it learned.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/presage");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("presage");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/presage"),
        None => PathBuf::from("/var/lib/presage"),
    }
}

impl AgentConfig {
    /// Where the profile store is: `store` when set, else SQLite in `data_dir`.
    pub fn store_url(&self) -> Result<presage_store::StoreUrl, AgentError> {
        match &self.store {
            Some(text) => presage_store::StoreUrl::parse(text).map_err(|e| AgentError::Config {
                file: PathBuf::from("<config>"),
                message: format!("field `store`: {e}"),
            }),
            None => Ok(presage_store::StoreUrl::in_data_dir(&self.data_dir)),
        }
    }

    /// The embedded defaults.
    pub fn embedded() -> Result<AgentConfig, AgentError> {
        AgentConfig::from_toml(DEFAULT_CONFIG_TOML, Path::new("<embedded defaults>"))
    }

    /// The defaults overlaid with the keys of the TOML file at `path`; errors name the
    /// file, line, column and key of every problem.
    pub fn load(path: &Path) -> Result<AgentConfig, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Io {
            context: format!("reading config {}", path.display()),
            source,
        })?;
        let mut config = AgentConfig::from_toml(&text, path)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// The defaults overlaid with the keys of `text` (`origin` names it in errors).
    pub fn from_toml(text: &str, origin: &Path) -> Result<AgentConfig, AgentError> {
        AgentConfig::check(text, origin).map_err(AgentError::Invalid)
    }

    /// Like [`AgentConfig::from_toml`], with every problem found listed and located
    /// (`presage config check`).
    pub fn check(text: &str, origin: &Path) -> Result<AgentConfig, ConfigErrors> {
        load::parse(text, origin)
    }

    /// Checks a config built in code (the loader already did this for a file): the
    /// problems, each naming its key.
    pub fn validate(&self) -> Result<(), AgentError> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        Err(AgentError::Invalid(ConfigErrors {
            file: self
                .source
                .clone()
                .unwrap_or_else(|| PathBuf::from("<config>")),
            problems: problems
                .into_iter()
                .map(|p| ConfigProblem {
                    line: None,
                    column: None,
                    key: load::render_path(&p.path),
                    reason: p.reason,
                })
                .collect(),
        }))
    }

    /// Every semantic problem of the settings (ranges, names), each at its key path.
    /// The `[[policies]]` are checked when compiled.
    pub(crate) fn problems(&self) -> Vec<load::Problem> {
        use load::Problem;
        let mut out = Vec::new();
        if !(self.interval_s.is_finite() && (0.05..=3600.0).contains(&self.interval_s)) {
            out.push(Problem::at(
                &[],
                "interval_s",
                format!("{} is outside 0.05..=3600 seconds", self.interval_s),
            ));
        }
        if presage_policy::registry::find(&self.policy).is_none() {
            let names: Vec<_> = presage_policy::registry::all()
                .iter()
                .map(|p| p.name)
                .collect();
            out.push(Problem::at(
                &[],
                "policy",
                format!(
                    "unknown rule {:?} (known: {})",
                    self.policy,
                    names.join(", ")
                ),
            ));
        }
        if self.horizons_s.is_empty() || self.horizons_s.windows(2).any(|w| w[0] >= w[1]) {
            out.push(Problem::at(
                &[],
                "horizons_s",
                format!("{:?} must be non-empty and increasing", self.horizons_s),
            ));
        }
        if let Err(e) = self.response.validate() {
            // The webhook's messages read "field `response.x`: reason".
            let (key, reason) = e
                .strip_prefix("field `")
                .and_then(|rest| rest.split_once("`: "))
                .map_or(("response".to_string(), e.clone()), |(k, r)| {
                    (k.to_string(), r.to_string())
                });
            out.push(Problem::at(&[], &key, reason));
        }
        if let Err(e) = self.default_policy.validate() {
            out.push(Problem::at(
                &[load::Seg::Key("default_policy".into())],
                &e.field,
                format!("{} {}", e.value, e.reason),
            ));
        }
        if let Err(e) = presage_linux::Discoverer::new(&self.discovery) {
            let key = match &e {
                presage_linux::LinuxError::Pattern { field, .. } => format!("discovery.{field}"),
                _ => "discovery".to_string(),
            };
            out.push(Problem::at(&[], &key, e.to_string()));
        }
        out
    }

    /// The settings that differ from `other` and take a restart to change (a reload
    /// leaves them as they are).
    pub fn restart_only_changes(&self, other: &AgentConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |differs: bool, key: &'static str| {
            if differs {
                out.push(key);
            }
        };
        check(self.mode != other.mode, "mode");
        check(self.interval_s != other.interval_s, "interval_s");
        check(
            self.decide_every_s != other.decide_every_s,
            "decide_every_s",
        );
        check(
            self.restore_on_exit != other.restore_on_exit,
            "restore_on_exit",
        );
        check(self.policy != other.policy, "policy");
        check(self.knob != other.knob, "knob");
        check(self.data_dir != other.data_dir, "data_dir");
        check(self.store != other.store, "store");
        check(
            self.record_samples != other.record_samples,
            "record_samples",
        );
        check(self.cgroup_root != other.cgroup_root, "cgroup_root");
        check(self.mountinfo != other.mountinfo, "mountinfo");
        check(self.proc_root != other.proc_root, "proc_root");
        check(self.network != other.network, "network");
        check(self.horizons_s != other.horizons_s, "horizons_s");
        check(self.presage != other.presage, "presage");
        check(self.response != other.response, "response");
        check(self.api != other.api, "api");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse_and_validate() {
        let c = AgentConfig::embedded().unwrap();
        assert_eq!(c.mode, Mode::Recommend);
        assert!((c.interval_s - 1.0).abs() < 1e-12);
        assert_eq!(c.policy, "presage");
        assert!(c.restore_on_exit);
    }

    #[test]
    fn a_file_changes_only_its_keys() {
        let c = AgentConfig::from_toml(
            "mode = \"enforce\"\n[discovery]\nexclude = [\"system.slice/ssh.service\"]\n",
            Path::new("a.toml"),
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.decide_every_s, 10);
        assert_eq!(c.discovery.exclude, vec!["system.slice/ssh.service"]);
        assert!(!c.discovery.roots.is_empty(), "roots keep their default");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = AgentConfig::from_toml("interval_s = 0.0\n", Path::new("/etc/p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/p.toml") && e.contains("interval_s"), "{e}");
        let e = AgentConfig::from_toml("polcy = \"x\"\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("polcy"), "{e}");
        let e = AgentConfig::from_toml("policy = \"nope\"\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("presage"), "{e}");
        let e = AgentConfig::from_toml("mode = \"loud\"\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("loud"), "{e}");
        let e = AgentConfig::from_toml(
            "[response]\nwebhook_url = \"https://x\"\n",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("webhook_url"), "{e}");
        let e = AgentConfig::from_toml(
            "[default_policy.response]\nmax_rung = \"nuke\"\n",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nuke"), "{e}");
    }

    #[test]
    fn response_settings_default_to_notify_only_and_override_per_key() {
        let c = AgentConfig::embedded().unwrap();
        assert_eq!(c.response.webhook_url, None);
        assert_eq!(
            c.default_policy.response.max_rung,
            presage_policy::Rung::Webhook
        );
        let c = AgentConfig::from_toml(
            "[response]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nqueue = 8\n\
             [default_policy.response]\nmax_rung = \"freeze\"\n\
             [default_policy.response.cooldown_s]\nthrottle = 5\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(
            c.response.webhook_url.as_deref(),
            Some("http://127.0.0.1:9/hook")
        );
        assert_eq!(c.response.queue, 8);
        assert_eq!(c.response.max_attempts, 5, "unset keys keep their default");
        let r = &c.default_policy.response;
        assert_eq!(r.max_rung, presage_policy::Rung::Freeze);
        assert_eq!(r.cooldown_s.throttle, 5);
        assert_eq!(r.cooldown_s.freeze, 120);
    }
}
