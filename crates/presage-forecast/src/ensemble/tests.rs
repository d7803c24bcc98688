use presage_core::{Quantiles, Usage, WorkloadId};

use super::*;

/// A member that always forecasts the same CPU distribution: `point` everywhere.
#[derive(Debug, Clone)]
struct Fixed {
    name: &'static str,
    point: f64,
}

impl Forecaster for Fixed {
    fn name(&self) -> &'static str {
        self.name
    }
    fn observe(&mut self, _sample: &Sample) {}
    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        let q = Quantiles::point(self.point).ok()?;
        let horizons = horizons_s
            .iter()
            .map(|&horizon_s| {
                let mut quantiles = ResourceMap::none();
                quantiles.set(Resource::Cpu, Some(q));
                HorizonForecast {
                    horizon_s,
                    quantiles,
                }
            })
            .collect();
        Forecast::new(now, self.name, horizons).ok()
    }
    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(self.name, 1, &self.point)
    }
}

impl ForecasterFactory for Fixed {
    fn name(&self) -> &'static str {
        self.name
    }
    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(self.clone())
    }
    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        Ok(Box::new(Fixed {
            name: self.name,
            point: state.decode(self.name, 1)?,
        }))
    }
}

fn sample(t: i64, cpu: f64) -> Sample {
    let usage = Usage::empty().with(Resource::Cpu, cpu).expect("usage");
    Sample::new(
        Timestamp::from_unix_secs(t),
        WorkloadId::new("w").expect("id"),
        60_000,
        usage,
    )
    .expect("sample")
}

fn ensemble(points: &[(&'static str, f64)], price: f64) -> Ensemble {
    let members: Vec<Arc<dyn ForecasterFactory>> = points
        .iter()
        .map(|&(name, point)| Arc::new(Fixed { name, point }) as Arc<dyn ForecasterFactory>)
        .collect();
    let mut prices = ResourceMap::from_fn(|_| 0.0);
    prices.set(Resource::Cpu, price);
    Ensemble::new(members, EnsembleConfig::with_price(prices)).expect("ensemble")
}

fn chosen(f: &dyn Forecaster, t: i64) -> String {
    f.forecast(Timestamp::from_unix_secs(t), &[60])
        .map(|fc| fc.model().to_owned())
        .unwrap_or_default()
}

#[test]
fn the_cheapest_member_wins_and_under_prediction_costs_more() {
    // Demand is 2 cores every minute. "tight" at 1.5 is under by 0.5 every step: each
    // step costs the price (5). "loose" at 3 wastes 1 core a step: cost 1. "exact" at 2
    // costs 0. Exact wins; between the other two, wasting beats starving.
    let e = ensemble(&[("tight", 1.5), ("loose", 3.0), ("exact", 2.0)], 5.0);
    let mut f = e.create();
    for t in 0..50 {
        f.observe(&sample(t * 60, 2.0));
    }
    assert!(
        chosen(f.as_ref(), 3000).contains("cpu:exact"),
        "{}",
        chosen(f.as_ref(), 3000)
    );
    let e = ensemble(&[("tight", 1.5), ("loose", 3.0)], 5.0);
    let mut f = e.create();
    for t in 0..50 {
        f.observe(&sample(t * 60, 2.0));
    }
    assert!(chosen(f.as_ref(), 3000).contains("cpu:loose"));
}

fn switches(penalty: f64) -> usize {
    // "a" (2.0) wastes 0.1 core a step and misses the rare 2.05 spike (price 5); "b"
    // (2.1) wastes 0.2 and never misses. One spike every 50 steps makes them near-equal
    // (≈ 0.198 vs 0.197 a step), so their decayed costs keep crossing.
    let members: Vec<Arc<dyn ForecasterFactory>> = vec![
        Arc::new(Fixed {
            name: "a",
            point: 2.0,
        }),
        Arc::new(Fixed {
            name: "b",
            point: 2.1,
        }),
    ];
    let mut prices = ResourceMap::from_fn(|_| 0.0);
    prices.set(Resource::Cpu, 5.0);
    let config = EnsembleConfig {
        switch_penalty: penalty,
        half_life_s: 3600.0,
        ..EnsembleConfig::with_price(prices)
    };
    let mut f = Ensemble::new(members, config).expect("ensemble").create();
    let mut count = 0;
    let mut last = String::new();
    for t in 0..2000 {
        let demand = if t % 50 == 49 { 2.05 } else { 1.9 };
        f.observe(&sample(t * 60, demand));
        let now = chosen(f.as_ref(), t * 60);
        if !last.is_empty() && now != last {
            count += 1;
        }
        last = now;
    }
    count
}

#[test]
fn the_switch_penalty_stops_flapping_between_near_equals() {
    let free = switches(0.0);
    let damped = switches(0.5);
    assert!(
        free >= 10,
        "without a penalty the choice flaps: {free} switches"
    );
    assert!(damped * 5 <= free, "with it, far fewer: {damped} vs {free}");
}

#[test]
fn save_and_restore_keep_the_choice() -> Result<(), ForecastError> {
    let e = ensemble(&[("tight", 1.5), ("loose", 3.0)], 5.0);
    let mut f = e.create();
    for t in 0..50 {
        f.observe(&sample(t * 60, 2.0));
    }
    let back = e.restore(&f.save()?)?;
    assert_eq!(chosen(back.as_ref(), 3000), chosen(f.as_ref(), 3000));
    let other = ensemble(&[("tight", 1.5)], 5.0);
    assert!(
        other.restore(&f.save()?).is_err(),
        "a different member list is refused"
    );
    Ok(())
}

#[test]
fn an_empty_ensemble_is_refused() {
    let prices = ResourceMap::from_fn(|_| 1.0);
    assert!(Ensemble::new(vec![], EnsembleConfig::with_price(prices)).is_err());
}

/// A member whose CPU forecast is `near` below `split_s` and `far` from it on.
#[derive(Debug, Clone)]
struct Split {
    name: &'static str,
    near: f64,
    far: f64,
}

const SPLIT_S: u32 = 1800;

impl Forecaster for Split {
    fn name(&self) -> &'static str {
        self.name
    }
    fn observe(&mut self, _sample: &Sample) {}
    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        let horizons = horizons_s
            .iter()
            .map(|&horizon_s| {
                let v = if horizon_s < SPLIT_S {
                    self.near
                } else {
                    self.far
                };
                let mut quantiles = ResourceMap::none();
                quantiles.set(Resource::Cpu, Quantiles::point(v).ok());
                HorizonForecast {
                    horizon_s,
                    quantiles,
                }
            })
            .collect();
        Forecast::new(now, self.name, horizons).ok()
    }
    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(self.name, 1, &(self.near, self.far))
    }
}

impl ForecasterFactory for Split {
    fn name(&self) -> &'static str {
        self.name
    }
    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(self.clone())
    }
    fn restore(&self, _state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        Ok(Box::new(self.clone()))
    }
}

/// "quick" is right about the next minute and wrong (5) an hour out; "slow" the reverse;
/// CPU priced at 5.
fn quick_and_slow() -> (Vec<Arc<dyn ForecasterFactory>>, ResourceMap<f64>) {
    let split = |name, near, far| Arc::new(Split { name, near, far }) as Arc<dyn ForecasterFactory>;
    let mut prices = ResourceMap::from_fn(|_| 0.0);
    prices.set(Resource::Cpu, 5.0);
    (
        vec![split("quick", 1.0, 5.0), split("slow", 3.0, 1.0)],
        prices,
    )
}

#[test]
fn far_horizons_come_from_the_member_whose_median_was_right_that_far_ahead() {
    // Demand is 1 core throughout. "quick" is right about the next minute and wrong
    // (5) an hour out; "slow" is the reverse. Each horizon goes to the one right there.
    let (members, prices) = quick_and_slow();
    let config = EnsembleConfig {
        ahead_warmup_s: 0,
        ..EnsembleConfig::with_price(prices)
    };
    let mut f = Ensemble::new(members, config).expect("ensemble").create();
    for t in 0..240 {
        f.observe(&sample(t * 60, 1.0));
    }
    let now = Timestamp::from_unix_secs(240 * 60);
    let fc = f.forecast(now, &[60, 3600]).expect("forecast");
    assert!(fc.model().contains("cpu:quick>slow"), "{}", fc.model());
    let p50 = |h| fc.at(Resource::Cpu, h).map(|q| q.p50());
    assert_eq!((p50(60), p50(3600)), (Some(1.0), Some(1.0)));
}

#[test]
fn far_forecasts_are_not_judged_during_the_warmup() {
    // The same members under the default one-day warm-up: after four hours nothing has
    // been judged far ahead, so the far choice is still the first member.
    let (members, prices) = quick_and_slow();
    let mut f = Ensemble::new(members, EnsembleConfig::with_price(prices))
        .expect("ensemble")
        .create();
    for t in 0..240 {
        f.observe(&sample(t * 60, 1.0));
    }
    let fc = f
        .forecast(Timestamp::from_unix_secs(240 * 60), &[60, 3600])
        .expect("forecast");
    assert!(fc.model().contains("cpu:quick,"), "{}", fc.model());
}
