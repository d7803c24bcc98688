//! Demand patterns for `presage loadgen`: what CPU and memory to ask for at each moment.
//!
//! A pattern is a pure function of the time since the start, so the CPU burners and the
//! memory supervisor can each evaluate it on their own clock without sharing state, and
//! the report can integrate it exactly.

use anyhow::{Context, Result, bail};

use super::turn::Turn;
use crate::simulate::parse_bytes;

/// What the generator asks for at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Demand {
    /// CPU cores to burn.
    pub(crate) cpu: f64,
    /// Resident memory to hold, in bytes.
    pub(crate) mem_bytes: u64,
}

/// A time-varying demand, parsed from `--pattern` or built from `--cpu`/`--memory`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pattern {
    /// The same demand all the time.
    Constant(Demand),
    /// A low/high cycle with linear ramps; see [`Periodic`].
    Periodic(Periodic),
    /// Piecewise-constant demand: each step holds from its time until the next step's
    /// (the last one holds forever). Times are strictly increasing and the first is 0.
    Steps(Vec<(f64, Demand)>),
    /// Another pattern until a [`Turn`], then that pattern changed by it (`--turn`).
    Turned(Box<Pattern>, Turn),
}

/// `periodic:`: every period starts low, ramps up to high at `(1 - duty) · period`, holds,
/// and ramps back down so that it is low again exactly when the next period starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Periodic {
    /// Length of one cycle, in seconds.
    pub(crate) period_s: f64,
    /// Demand during the low phase.
    pub(crate) low: Demand,
    /// Demand during the high phase.
    pub(crate) high: Demand,
    /// Fraction of the period spent at or ramping to/from high (0 < duty ≤ 1).
    pub(crate) duty: f64,
    /// Seconds each linear ramp (up and down) takes; both ramps fit inside the high phase.
    pub(crate) ramp_s: f64,
}

/// The fields `periodic:` accepts, for the error that rejects any other.
const PERIODIC_FIELDS: &str = "period, low-cpu, high-cpu, low-mem, high-mem, duty, ramp";

impl Periodic {
    /// How far from low (0) towards high (1) the demand is at `t` seconds.
    pub(crate) fn level(&self, t: f64) -> f64 {
        let u = t.rem_euclid(self.period_s);
        let rise = (1.0 - self.duty) * self.period_s;
        let fall = self.period_s - self.ramp_s;
        if u < rise {
            0.0
        } else if u < rise + self.ramp_s {
            (u - rise) / self.ramp_s
        } else if u < fall {
            1.0
        } else {
            // Only reachable with ramp_s > 0: u ∈ [period - ramp, period).
            1.0 - (u - fall) / self.ramp_s
        }
    }
}

impl Pattern {
    /// Parses a `--pattern` spec (syntax in the `--pattern` help); every error names the
    /// field and value that are wrong.
    pub(crate) fn parse(spec: &str) -> Result<Self> {
        let (kind, body) = spec.split_once(':').with_context(|| {
            format!("--pattern {spec:?}: expected periodic:…, constant:… or steps:…")
        })?;
        match kind.trim() {
            "periodic" => parse_periodic(body),
            "constant" => parse_constant(body),
            "steps" => parse_steps(body),
            other => bail!(
                "--pattern {spec:?}: unknown kind {other:?} (expected periodic, constant or steps)"
            ),
        }
    }

    /// The demand `t` seconds after the start.
    pub(crate) fn at(&self, t: f64) -> Demand {
        match self {
            Pattern::Constant(d) => *d,
            Pattern::Periodic(p) => {
                let x = p.level(t);
                // This form of the interpolation is exact at both ends (x = 0 and 1).
                let lerp = |low: f64, high: f64| low * (1.0 - x) + high * x;
                Demand {
                    cpu: lerp(p.low.cpu, p.high.cpu),
                    mem_bytes: lerp(p.low.mem_bytes as f64, p.high.mem_bytes as f64).round() as u64,
                }
            }
            Pattern::Steps(steps) => steps
                .iter()
                .take_while(|(start, _)| *start <= t)
                .last()
                .or(steps.first())
                .map_or(
                    Demand {
                        cpu: 0.0,
                        mem_bytes: 0,
                    },
                    |(_, d)| *d,
                ),
            Pattern::Turned(base, turn) => turn.apply(t, base.at(t)),
        }
    }

    /// The largest CPU and the largest memory the pattern ever asks for (not necessarily
    /// at the same moment): they size the burner threads and decide whether a memory
    /// worker is needed at all.
    pub(crate) fn peak(&self) -> Demand {
        let all: Vec<Demand> = match self {
            Pattern::Turned(base, turn) => vec![turn.peak(base.peak())],
            Pattern::Constant(d) => vec![*d],
            Pattern::Periodic(p) => vec![p.low, p.high],
            Pattern::Steps(steps) => steps.iter().map(|(_, d)| *d).collect(),
        };
        all.iter().fold(
            Demand {
                cpu: 0.0,
                mem_bytes: 0,
            },
            |acc, d| Demand {
                cpu: acc.cpu.max(d.cpu),
                mem_bytes: acc.mem_bytes.max(d.mem_bytes),
            },
        )
    }

    /// The mean CPU target over `[0, t]`, by the midpoint rule on ≤ 1 ms steps: exact to
    /// well under the burners' own jitter, and cheap next to a run of that length.
    pub(crate) fn cpu_mean(&self, t: f64) -> f64 {
        if t <= 0.0 {
            return self.at(0.0).cpu;
        }
        let n = (t * 1000.0).ceil().clamp(1000.0, 10_000_000.0) as u64;
        let dt = t / n as f64;
        let sum: f64 = (0..n).map(|i| self.at((i as f64 + 0.5) * dt).cpu).sum();
        sum / n as f64
    }
}

/// A memory size for `what` (a flag or field name): `0`, plain bytes or K/M/G/T with an
/// optional `i`/`iB`/`B`, all binary multiples as cgroup limits are.
pub(crate) fn parse_size(what: &str, text: &str) -> Result<u64> {
    if text.trim().parse::<f64>().is_ok_and(|v| v == 0.0) {
        return Ok(0);
    }
    // The shared parser knows KiB/MiB/GiB; accept the Kubernetes-style Ki/Mi/Gi too.
    let t = text.trim();
    let spelled = if t.ends_with(['i', 'I']) {
        format!("{t}B")
    } else {
        t.to_owned()
    };
    let bytes = parse_bytes(&spelled).with_context(|| format!("{what}={text:?} is not a size"))?;
    Ok(bytes.round() as u64)
}

/// A CPU figure for `what`: a finite number of cores, ≥ 0.
pub(crate) fn parse_cores(what: &str, text: &str) -> Result<f64> {
    let cores: f64 = text
        .trim()
        .parse()
        .with_context(|| format!("{what}={text:?} is not a number of cores"))?;
    if !(cores.is_finite() && cores >= 0.0) {
        bail!("{what}={text:?}: cores must be a finite number ≥ 0");
    }
    Ok(cores)
}

/// A finite number for `what` that satisfies `ok`; `rule` says which in the error.
fn parse_number(what: &str, text: &str, ok: fn(f64) -> bool, rule: &str) -> Result<f64> {
    let value: f64 = text
        .trim()
        .parse()
        .with_context(|| format!("{what}={text:?} is not a number"))?;
    if !(value.is_finite() && ok(value)) {
        bail!("{what}={text:?}: must be {rule}");
    }
    Ok(value)
}

/// `KEY=VALUE` pairs of a comma-separated body, with the field name for errors.
fn fields<'a>(kind: &'a str, body: &'a str) -> impl Iterator<Item = Result<(&'a str, &'a str)>> {
    body.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(move |field| {
            field
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .with_context(|| format!("--pattern {kind}: field {field:?} is not KEY=VALUE"))
        })
}

fn parse_periodic(body: &str) -> Result<Pattern> {
    let mut period = None;
    let mut low = Demand {
        cpu: 0.0,
        mem_bytes: 0,
    };
    let mut high = low;
    let mut duty = 0.5;
    let mut ramp = 0.0;
    for field in fields("periodic", body) {
        let (key, value) = field?;
        let what = format!("--pattern periodic: {key}");
        match key {
            "period" => period = Some(parse_number(&what, value, |v| v > 0.0, "> 0 seconds")?),
            "low-cpu" => low.cpu = parse_cores(&what, value)?,
            "high-cpu" => high.cpu = parse_cores(&what, value)?,
            "low-mem" => low.mem_bytes = parse_size(&what, value)?,
            "high-mem" => high.mem_bytes = parse_size(&what, value)?,
            "duty" => duty = parse_number(&what, value, |v| v > 0.0 && v <= 1.0, "in (0, 1]")?,
            "ramp" => ramp = parse_number(&what, value, |v| v >= 0.0, "≥ 0 seconds")?,
            other => {
                bail!("--pattern periodic: unknown field {other:?} (expected {PERIODIC_FIELDS})")
            }
        }
    }
    let period_s = period.context("--pattern periodic: the field period=SECONDS is required")?;
    // Both ramps live inside the high phase so that every period starts and ends low.
    if 2.0 * ramp > duty * period_s {
        bail!(
            "--pattern periodic: ramp={ramp} does not fit: two ramps need 2·ramp ≤ duty·period = {}",
            duty * period_s
        );
    }
    Ok(Pattern::Periodic(Periodic {
        period_s,
        low,
        high,
        duty,
        ramp_s: ramp,
    }))
}

fn parse_constant(body: &str) -> Result<Pattern> {
    let mut demand = Demand {
        cpu: 0.0,
        mem_bytes: 0,
    };
    for field in fields("constant", body) {
        let (key, value) = field?;
        let what = format!("--pattern constant: {key}");
        match key {
            "cpu" => demand.cpu = parse_cores(&what, value)?,
            "mem" => demand.mem_bytes = parse_size(&what, value)?,
            other => bail!("--pattern constant: unknown field {other:?} (expected cpu, mem)"),
        }
    }
    Ok(Pattern::Constant(demand))
}

fn parse_steps(body: &str) -> Result<Pattern> {
    let mut steps: Vec<(f64, Demand)> = Vec::new();
    for field in fields("steps", body) {
        let (time, value) = field?;
        let start = parse_number("--pattern steps: time", time, |v| v >= 0.0, "≥ 0 seconds")?;
        let what = format!("--pattern steps: step at {time}s");
        let (cpu, mem) = value
            .split_once('/')
            .with_context(|| format!("{what}: {value:?} is not CPU/MEMORY (e.g. 0.5/100M)"))?;
        if let Some((last, _)) = steps.last()
            && start <= *last
        {
            bail!("{what}: step times must increase (previous step at {last})");
        }
        if steps.is_empty() && start != 0.0 {
            bail!("{what}: the first step must start at 0");
        }
        let demand = Demand {
            cpu: parse_cores(&format!("{what}: cpu"), cpu)?,
            mem_bytes: parse_size(&format!("{what}: mem"), mem)?,
        };
        steps.push((start, demand));
    }
    if steps.is_empty() {
        bail!("--pattern steps: give at least one step, e.g. steps:0=0.2/64M,30=0.9/256M");
    }
    Ok(Pattern::Steps(steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn periodic() -> Result<Pattern> {
        Pattern::parse(
            "periodic:period=60,low-cpu=0.2,high-cpu=0.9,low-mem=64M,high-mem=256M,duty=0.3,ramp=5",
        )
    }

    #[test]
    fn periodic_is_low_then_ramps_holds_and_comes_back_down() -> Result<()> {
        let p = periodic()?;
        // Low phase: [0, 42) since (1 - 0.3) · 60 = 42.
        assert_eq!(
            p.at(0.0),
            Demand {
                cpu: 0.2,
                mem_bytes: 64 * MIB
            }
        );
        assert_eq!(p.at(41.9).cpu, 0.2);
        // Ramp midpoint: 2.5 s into the 5 s ramp that starts at 42.
        let mid = p.at(44.5);
        assert!((mid.cpu - 0.55).abs() < 1e-9, "{mid:?}");
        assert_eq!(mid.mem_bytes, 160 * MIB);
        // High hold: [47, 55).
        assert_eq!(
            p.at(47.0),
            Demand {
                cpu: 0.9,
                mem_bytes: 256 * MIB
            }
        );
        assert_eq!(p.at(54.9).cpu, 0.9);
        // Down ramp [55, 60): its midpoint, then low again at the next period.
        assert!((p.at(57.5).cpu - 0.55).abs() < 1e-9);
        assert_eq!(p.at(60.0).cpu, 0.2);
        assert_eq!(p.at(120.0 + 50.0).cpu, 0.9);
        Ok(())
    }

    #[test]
    fn a_zero_ramp_is_a_square_wave() -> Result<()> {
        let p = Pattern::parse("periodic:period=10,high-cpu=1,duty=0.5")?;
        assert_eq!(p.at(4.99).cpu, 0.0);
        assert_eq!(p.at(5.0).cpu, 1.0);
        assert_eq!(p.at(9.99).cpu, 1.0);
        assert!((p.cpu_mean(10.0) - 0.5).abs() < 1e-3);
        Ok(())
    }

    #[test]
    fn constant_and_steps() -> Result<()> {
        let c = Pattern::parse("constant:cpu=0.5,mem=100M")?;
        assert_eq!(
            c.at(1e6),
            Demand {
                cpu: 0.5,
                mem_bytes: 100 * MIB
            }
        );
        let s = Pattern::parse("steps:0=0.2/64M,10=0.9/256Mi,20=0/0")?;
        assert_eq!(s.at(5.0).cpu, 0.2);
        assert_eq!(s.at(10.0).mem_bytes, 256 * MIB);
        assert_eq!(
            s.at(99.0),
            Demand {
                cpu: 0.0,
                mem_bytes: 0
            }
        );
        assert_eq!(
            s.peak(),
            Demand {
                cpu: 0.9,
                mem_bytes: 256 * MIB
            }
        );
        assert!((s.cpu_mean(20.0) - 0.55).abs() < 1e-3);
        Ok(())
    }

    #[test]
    fn sizes_take_binary_units_with_or_without_i() -> Result<()> {
        assert_eq!(parse_size("--memory", "200M")?, 200 * MIB);
        assert_eq!(parse_size("--memory", "200Mi")?, 200 * MIB);
        assert_eq!(parse_size("--memory", "1Gi")?, 1024 * MIB);
        assert_eq!(parse_size("--memory", "512K")?, MIB / 2);
        assert_eq!(parse_size("--memory", "4096")?, 4096);
        assert_eq!(parse_size("--memory", "0")?, 0);
        let err = format!(
            "{:#}",
            parse_size("--memory", "200X").err().context("accepted")?
        );
        assert!(err.contains("--memory=\"200X\""), "{err}");
        Ok(())
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let cases = [
            ("periodic:period=abc", "period=\"abc\""),
            ("periodic:low-cpu=0.2", "period=SECONDS is required"),
            ("periodic:period=10,high-mem=12X", "high-mem=\"12X\""),
            ("periodic:period=10,duty=2", "duty=\"2\""),
            ("periodic:period=10,ramp=3", "ramp=3"),
            ("periodic:period=10,colour=red", "\"colour\""),
            ("constant:cpu=-1", "cpu=\"-1\""),
            ("steps:5=0.1/1M", "first step"),
            ("steps:0=0.1", "CPU/MEMORY"),
            ("sawtooth:period=3", "\"sawtooth\""),
        ];
        for (spec, needle) in cases {
            match Pattern::parse(spec) {
                Ok(p) => panic!("{spec} parsed as {p:?}"),
                Err(e) => {
                    let text = format!("{e:#}");
                    assert!(text.contains(needle), "{spec}: {text}");
                }
            }
        }
    }
}
