//! Every allocation rule presage can run, by name, with the one knob a sweep turns.
//!
//! The simulator and the agent pick rules from here; `presage simulate --sweep` runs each
//! over its `sweep` grid to draw its slack-vs-violation frontier.

use std::sync::Arc;

use presage_forecast::{
    Ensemble, EnsembleConfig, ForecasterFactory, HoltWinters, HoltWintersConfig, Residual,
    Segmented, SegmentedConfig,
};

use crate::baselines::{StaticAllocator, autopilot_ml, autopilot_mw, cloudscale, threshold, vpa};
use crate::{AllocatorFactory, PolicyError, Predictive, PredictiveConfig};

/// The parts an allocation rule runs with.
#[derive(Debug, Clone)]
pub struct PolicyParts {
    /// The rule.
    pub allocator: Arc<dyn AllocatorFactory>,
    /// The forecasting model it reads, if any.
    pub forecaster: Option<Arc<dyn ForecasterFactory>>,
}

/// A named rule with its knob.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInfo {
    /// The name used on the command line and in reports.
    pub name: &'static str,
    /// One line on what it is.
    pub summary: &'static str,
    /// What the knob means.
    pub knob: &'static str,
    /// The knob's default (the rule as its authors ship it).
    pub default_knob: f64,
    /// Knob values `--sweep` runs.
    pub sweep: &'static [f64],
    /// Builds the rule with a knob value.
    pub build: fn(f64) -> Result<PolicyParts, PolicyError>,
}

impl PolicyInfo {
    /// The rule at its default knob.
    pub fn build_default(&self) -> Result<PolicyParts, PolicyError> {
        (self.build)(self.default_knob)
    }
}

fn build_static(scale: f64) -> Result<PolicyParts, PolicyError> {
    Ok(PolicyParts {
        allocator: Arc::new(StaticAllocator::new(scale)?),
        forecaster: None,
    })
}

/// Bytes of memory priced like one core (a typical server's memory per core): the knob
/// prices a CPU violation in cores, a memory violation costs this many bytes per core.
pub const MEMORY_PER_CORE: f64 = 32.0 * 1024.0 * 1024.0 * 1024.0;

fn build_presage(price: f64) -> Result<PolicyParts, PolicyError> {
    build_presage_with(price, Vec::new())
}

/// presage at `price` with `extra` members added to its ensemble — how a model built
/// outside this crate (the neural forecaster of `presage-nn`, which depends on the
/// simulator and so cannot be a dependency here) joins the allocation ensemble.
pub fn build_presage_with(
    price: f64,
    extra: Vec<Arc<dyn ForecasterFactory>>,
) -> Result<PolicyParts, PolicyError> {
    build_presage_configured(PredictiveConfig::priced(price, MEMORY_PER_CORE)?, extra)
}

/// presage with an explicit allocator `config` (the live agent tunes its time constants
/// to a 1-second cadence) and `extra` ensemble members.
pub fn build_presage_configured(
    config: PredictiveConfig,
    extra: Vec<Arc<dyn ForecasterFactory>>,
) -> Result<PolicyParts, PolicyError> {
    let model_error = |e: presage_forecast::ForecastError| PolicyError {
        field: "presage models".into(),
        value: e.to_string(),
        reason: "invalid model settings",
    };
    let mut members: Vec<Arc<dyn ForecasterFactory>> = Vec::new();
    for window_s in [300, 900, 3_600, 14_400] {
        members.push(Arc::new(
            Residual::with_window(window_s, &config.resources).map_err(model_error)?,
        ));
    }
    // The seasonal members: the ones that see a daily batch coming.
    members.push(Arc::new(
        HoltWinters::new(HoltWintersConfig::default()).map_err(model_error)?,
    ));
    members.push(Arc::new(
        Segmented::new(SegmentedConfig::default()).map_err(model_error)?,
    ));
    members.extend(extra);
    let ensemble =
        Ensemble::new(members, EnsembleConfig::with_price(config.price)).map_err(model_error)?;
    Ok(PolicyParts {
        allocator: Arc::new(Predictive::new(config)),
        forecaster: Some(Arc::new(ensemble)),
    })
}

/// Every rule, in report order.
pub fn all() -> Vec<PolicyInfo> {
    vec![
        PolicyInfo {
            name: "static",
            summary: "the provisioned allocation, never changed (what users run today)",
            knob: "scale applied to the provisioned allocation",
            default_knob: 1.0,
            sweep: &[0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5],
            build: build_static,
        },
        PolicyInfo {
            name: "threshold",
            summary: "reactive thresholds: step up above 80 % of the limit, down below 30 %",
            knob: threshold::KNOB,
            default_knob: threshold::DEFAULT_KNOB,
            sweep: threshold::SWEEP,
            build: threshold::build,
        },
        PolicyInfo {
            name: "vpa",
            summary: "Kubernetes VPA recommender + updater (decaying histograms, P90 × 1.15, 24 h memory peaks, OOM bump)",
            knob: vpa::KNOB,
            default_knob: vpa::DEFAULT_KNOB,
            sweep: vpa::SWEEP,
            build: vpa::build,
        },
        PolicyInfo {
            name: "autopilot-mw",
            summary: "Google Autopilot moving window (load-adjusted P95 CPU, P98 memory, margin, 1 h max)",
            knob: autopilot_mw::KNOB,
            default_knob: autopilot_mw::DEFAULT_KNOB,
            sweep: autopilot_mw::SWEEP,
            build: autopilot_mw::build,
        },
        PolicyInfo {
            name: "autopilot-ml",
            summary: "Google Autopilot ML: ensemble of argmin models with overrun/underrun/change costs",
            knob: autopilot_ml::KNOB,
            default_knob: autopilot_ml::DEFAULT_KNOB,
            sweep: autopilot_ml::SWEEP,
            build: autopilot_ml::build,
        },
        PolicyInfo {
            name: "cloudscale",
            summary: "CloudScale-style: signature/Markov forecast + burst and remedial padding + fast correction",
            knob: cloudscale::KNOB,
            default_knob: cloudscale::DEFAULT_KNOB,
            sweep: cloudscale::SWEEP,
            build: cloudscale::build,
        },
        PolicyInfo {
            name: "presage",
            summary: "presage: forecast distribution → the limit minimising limit + price × P(violation), proactive raise, held release, fast repair",
            knob: "price of a violation, in cores (memory: × 32 GiB per core)",
            default_knob: 10.0,
            sweep: &[
                0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 300.0, 1000.0, 3000.0,
            ],
            build: build_presage,
        },
    ]
}

/// The rule called `name`.
pub fn find(name: &str) -> Option<PolicyInfo> {
    all().into_iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_builds_at_default_and_across_its_sweep() {
        for info in all() {
            assert!(info.build_default().is_ok(), "{}", info.name);
            assert!(!info.sweep.is_empty(), "{}", info.name);
            for &k in info.sweep {
                assert!((info.build)(k).is_ok(), "{} at {k}", info.name);
            }
            assert_eq!(find(info.name).map(|p| p.name), Some(info.name));
        }
        assert!(find("nope").is_none());
    }
}
