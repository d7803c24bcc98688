//! `--turn`: a workload that stops behaving like itself at a given moment — it spins every
//! core, leaks memory, or forks many processes. The live anomaly tests use it to check that
//! presage notices and responds, on a workload that was well-behaved until then.
//!
//! Spinning and leaking change the demand, so they are applied to the pattern (still a
//! pure function of time); forking is an action the run loop carries out.

use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use super::pattern::{Demand, parse_size};

/// What changes at the turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TurnKind {
    /// Burn every core the process may run on.
    Spin {
        /// The cores to burn (the process's available parallelism, read when parsed).
        cores: f64,
    },
    /// Grow resident memory steadily on top of the pattern, never giving it back.
    Leak {
        /// Bytes added per second.
        bytes_per_s: f64,
    },
    /// Start this many idle child processes, quickly.
    Fork {
        /// How many.
        processes: u32,
    },
}

/// A change of behaviour `at_s` seconds after the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Turn {
    /// When, in seconds since the start.
    pub(crate) at_s: f64,
    /// What.
    pub(crate) kind: TurnKind,
}

/// How many children a fork turn starts per run-loop tick: fast enough to look like a
/// fork storm to a 1-second sampler, slow enough not to starve a 2-core test host.
pub(crate) const FORKS_PER_TICK: usize = 20;

impl Turn {
    /// Parses `spin@SECS`, `leak:SIZE@SECS` (SIZE per second) or `fork:N@SECS`.
    pub(crate) fn parse(spec: &str) -> Result<Self> {
        let (what, at) = spec
            .rsplit_once('@')
            .with_context(|| format!("--turn {spec:?}: expected KIND@SECONDS, e.g. spin@120"))?;
        let at_s: f64 = at
            .trim()
            .parse()
            .with_context(|| format!("--turn {spec:?}: {at:?} is not a number of seconds"))?;
        if !(at_s.is_finite() && at_s >= 0.0) {
            bail!("--turn {spec:?}: the moment must be ≥ 0 seconds");
        }
        let (kind, arg) = what.split_once(':').unwrap_or((what, ""));
        let kind = match (kind.trim(), arg.trim()) {
            ("spin", "") => TurnKind::Spin {
                cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            },
            ("leak", rate) if !rate.is_empty() => {
                let bytes = parse_size(&format!("--turn {spec:?}: rate"), rate)?;
                if bytes == 0 {
                    bail!("--turn {spec:?}: a leak needs a rate > 0 per second");
                }
                TurnKind::Leak {
                    bytes_per_s: bytes as f64,
                }
            }
            ("fork", n) if !n.is_empty() => {
                let processes: u32 = n.parse().with_context(|| {
                    format!("--turn {spec:?}: {n:?} is not a number of processes")
                })?;
                if processes == 0 {
                    bail!("--turn {spec:?}: fork at least one process");
                }
                TurnKind::Fork { processes }
            }
            _ => bail!(
                "--turn {spec:?}: expected spin@SECS, leak:SIZE@SECS (SIZE per second) or fork:N@SECS"
            ),
        };
        Ok(Turn { at_s, kind })
    }

    /// The demand at `t` once the turn is applied to the pattern's `base` demand.
    pub(crate) fn apply(&self, t: f64, base: Demand) -> Demand {
        if t < self.at_s {
            return base;
        }
        match self.kind {
            TurnKind::Spin { cores } => Demand { cpu: cores, ..base },
            TurnKind::Leak { bytes_per_s } => Demand {
                mem_bytes: base
                    .mem_bytes
                    .saturating_add(((t - self.at_s) * bytes_per_s).round() as u64),
                ..base
            },
            TurnKind::Fork { .. } => base,
        }
    }

    /// The turn's own contribution to the peak demand: it sizes the burner threads and,
    /// for a leak, makes sure a memory worker exists.
    pub(crate) fn peak(&self, base: Demand) -> Demand {
        match self.kind {
            TurnKind::Spin { cores } => Demand {
                cpu: base.cpu.max(cores),
                ..base
            },
            TurnKind::Leak { bytes_per_s } => Demand {
                mem_bytes: base.mem_bytes.max(bytes_per_s.ceil() as u64),
                ..base
            },
            TurnKind::Fork { .. } => base,
        }
    }
}

/// The idle children of a fork turn; all are killed and reaped on drop.
#[derive(Debug, Default)]
pub(crate) struct Forks {
    children: Vec<Child>,
}

impl Forks {
    /// Starts up to [`FORKS_PER_TICK`] more children until `target` are running.
    pub(crate) fn grow_to(&mut self, target: u32) -> Result<()> {
        let missing = (target as usize).saturating_sub(self.children.len());
        for _ in 0..missing.min(FORKS_PER_TICK) {
            let child = Command::new("sleep")
                .arg("3600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| {
                    format!(
                        "--turn fork: starting child {} of {target} (sleep 3600)",
                        self.children.len() + 1
                    )
                })?;
            self.children.push(child);
        }
        Ok(())
    }

    /// Children started so far.
    pub(crate) fn len(&self) -> usize {
        self.children.len()
    }
}

impl Drop for Forks {
    fn drop(&mut self) {
        for child in &mut self.children {
            // Already gone (killed with the cgroup, say) is fine: there is nothing to stop.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn base() -> Demand {
        Demand {
            cpu: 0.3,
            mem_bytes: 64 * MIB,
        }
    }

    #[test]
    fn parses_each_kind_and_names_the_bad_part() -> Result<()> {
        assert!(matches!(
            Turn::parse("spin@120")?,
            Turn { at_s: 120.0, kind: TurnKind::Spin { cores } } if cores >= 1.0
        ));
        assert_eq!(
            Turn::parse("leak:20M@30")?.kind,
            TurnKind::Leak {
                bytes_per_s: (20 * MIB) as f64
            }
        );
        assert_eq!(
            Turn::parse("fork:300@5")?.kind,
            TurnKind::Fork { processes: 300 }
        );
        for (bad, says) in [
            ("spin", "KIND@SECONDS"),
            ("spin@-1", "≥ 0"),
            ("leak@10", "expected spin@SECS"),
            ("leak:0@10", "rate > 0"),
            ("fork:x@10", "\"x\" is not a number"),
            ("burn@10", "expected spin@SECS"),
        ] {
            let err = Turn::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        Ok(())
    }

    #[test]
    fn the_demand_changes_only_from_the_turn_on() -> Result<()> {
        let leak = Turn::parse("leak:10M@100")?;
        assert_eq!(leak.apply(99.9, base()), base());
        assert_eq!(leak.apply(100.0, base()).mem_bytes, 64 * MIB);
        assert_eq!(leak.apply(103.0, base()).mem_bytes, 94 * MIB);
        assert_eq!(leak.apply(103.0, base()).cpu, 0.3);
        let spin = Turn {
            at_s: 10.0,
            kind: TurnKind::Spin { cores: 2.0 },
        };
        assert_eq!(spin.apply(5.0, base()).cpu, 0.3);
        assert_eq!(spin.apply(10.0, base()).cpu, 2.0);
        assert_eq!(spin.peak(base()).cpu, 2.0);
        assert_eq!(Turn::parse("fork:10@0")?.apply(50.0, base()), base());
        Ok(())
    }
}
