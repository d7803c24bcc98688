//! Charts of a simulation: the slack-vs-violation frontier per resource, and usage-vs-limit
//! timelines. Each is written as SVG (for the docs) and PNG (for a quick look).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use thiserror::Error;

use crate::report::Report;
use crate::run::Timeline;

/// A chart that could not be drawn or written.
#[derive(Debug, Error)]
#[error("plot {path}: {message}")]
pub struct PlotError {
    /// The file being written.
    pub path: PathBuf,
    /// What failed.
    pub message: String,
}

// Embedded so charts carry text on machines without system fonts (DejaVu Sans, Bitstream
// Vera licence: assets/DejaVuSans.LICENSE).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static FONT_ONCE: Once = Once::new();

fn ensure_font() {
    FONT_ONCE.call_once(|| {
        // A font that fails to load leaves charts without text rather than failing them.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

const SIZE: (u32, u32) = (960, 640);

fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 9] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

type DrawResult = Result<(), String>;

/// A line chart, drawable on any backend.
struct LineChart<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    x_max: f64,
    y_max: f64,
    series: &'a [(String, Vec<(f64, f64)>)],
    markers: bool,
    /// A point to single out (VPA at its default knob on the frontier), with its label.
    mark: Option<(&'a str, (f64, f64))>,
}

/// Draws `chart` into `<stem>.svg` and `<stem>.png`; returns the files written.
fn both_formats(stem: &Path, chart: &LineChart<'_>) -> Result<Vec<PathBuf>, PlotError> {
    ensure_font();
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let fail = |path: &Path, message: String| PlotError {
        path: path.to_path_buf(),
        message,
    };
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        chart.draw(&root).map_err(|m| fail(&svg, m))?;
        root.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        chart.draw(&root).map_err(|m| fail(&png, m))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    Ok(vec![svg, png])
}

/// One resource's frontier: every policy's Pareto points, VPA's default marked.
pub fn frontier(report: &Report, resource: &str, stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let Some(frontiers) = report.frontiers.as_ref().and_then(|f| f.get(resource)) else {
        return Ok(Vec::new());
    };
    let series: Vec<(String, Vec<(f64, f64)>)> = frontiers
        .iter()
        .map(|(name, pts)| {
            (
                name.clone(),
                pts.iter().map(|p| (p[0] * 100.0, p[1] * 100.0)).collect(),
            )
        })
        .collect();
    // The decisions people make happen below ~20 % violations; a policy's far tail would
    // squash that region into a sliver, so the axis stops there (points beyond are left out).
    let x_max = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .min(20.0)
        * 1.05;
    let y_max = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .fold(10.0f64, f64::max)
        .min(100.0)
        * 1.05;
    let series: Vec<(String, Vec<(f64, f64)>)> = series
        .into_iter()
        .map(|(name, pts)| (name, pts.into_iter().filter(|p| p.0 <= x_max).collect()))
        .collect();
    let vpa = report
        .policies
        .iter()
        .find(|p| p.name == crate::report::REFERENCE)
        .and_then(|p| p.resources.get(resource))
        .map(|m| (m.violation_rate * 100.0, m.slack * 100.0))
        .filter(|p| p.0 <= x_max);
    let title = format!("{resource}: slack vs violation rate (lower-left is better)");
    both_formats(
        stem,
        &LineChart {
            title: &title,
            x_desc: "violation rate (% of workload-steps)",
            y_desc: "slack (% of allocation)",
            x_max,
            y_max,
            series: &series,
            markers: true,
            mark: vpa.as_ref().map(|p| ("vpa (default knob)", *p)),
        },
    )
}

impl LineChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let LineChart {
            title,
            x_desc,
            y_desc,
            x_max,
            y_max,
            series,
            markers,
            mark,
        } = *self;
        let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..x_max.max(1e-9), 0f64..y_max.max(1e-9))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        for (i, (name, pts)) in series.iter().enumerate() {
            // Demand is the reference every limit is read against: black, drawn last.
            let color = if name == "demand" { BLACK } else { palette(i) };
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(e)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if markers {
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
                    .map_err(e)?;
            }
        }
        if let Some((label, point)) = mark {
            chart
                .draw_series(std::iter::once(Cross::new(point, 9, BLACK.stroke_width(3))))
                .map_err(e)?
                .label(label)
                .legend(|(x, y)| Cross::new((x + 10, y), 6, BLACK.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        Ok(())
    }
}

/// The usage-vs-limit timeline of one workload and resource under each policy that
/// recorded one, over the last `days` of the trace.
pub fn timeline(
    workload: &str,
    resource: &str,
    timelines: &[&Timeline],
    days: f64,
    stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let Some(last) = timelines.first().and_then(|t| t.points.last()) else {
        return Ok(Vec::new());
    };
    let t0 = last.at_ms - (days.max(0.01) * 86_400_000.0) as i64;
    let shown = |p: &&crate::TimelinePoint| p.at_ms >= t0;
    let (scale, unit) = if resource == "memory" {
        (1.0 / (1024.0 * 1024.0 * 1024.0), "GiB")
    } else {
        (1.0, "cores")
    };
    let pick = |p: &crate::TimelinePoint| {
        if resource == "memory" {
            p.memory
        } else {
            p.cpu
        }
    };
    let hours = |at: i64| (at - t0) as f64 / 3_600_000.0;
    let demand = (
        "demand".to_owned(),
        timelines[0]
            .points
            .iter()
            .filter(shown)
            .map(|p| (hours(p.at_ms), pick(p).0 * scale))
            .collect(),
    );
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for t in timelines {
        series.push((
            format!("limit: {}", t.policy),
            t.points
                .iter()
                .filter(shown)
                .filter_map(|p| pick(p).1.map(|l| (hours(p.at_ms), l * scale)))
                .collect(),
        ));
    }
    series.push(demand);
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(1e-6f64, f64::max)
        * 1.1;
    let title = format!("{workload}: {resource} demand and limits");
    let y_desc = format!("{resource} ({unit})");
    both_formats(
        stem,
        &LineChart {
            title: &title,
            x_desc: "hours (last days of the trace)",
            y_desc: &y_desc,
            x_max,
            y_max,
            series: &series,
            markers: false,
            mark: None,
        },
    )
}

/// One resource of a cold-start evaluation, day by day of the second run: each arm's
/// slack (`slack_*`) and violation rate (`violations_*`), with the steady state drawn
/// flat for reference. Returns the files written.
pub fn coldstart_days(
    report: &crate::coldstart::PolicyReport,
    resource: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let Some(r) = report.resources.get(resource) else {
        return Ok(Vec::new());
    };
    let mut written = Vec::new();
    type Pick = fn(&crate::coldstart::Window) -> f64;
    let metrics: [(&str, &str, Pick); 2] = [
        ("slack", "slack (% of allocation)", |w| w.slack),
        ("violations", "violation rate (% of workload-steps)", |w| {
            w.violation_rate
        }),
    ];
    for (stem, y_desc, pick) in metrics {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = r
            .by_day
            .iter()
            .map(|(arm, days)| {
                (
                    arm.name().to_owned(),
                    days.iter()
                        .enumerate()
                        .filter(|(_, w)| w.steps > 0)
                        .map(|(d, w)| ((d + 1) as f64, pick(w) * 100.0))
                        .collect(),
                )
            })
            .collect();
        let days = series.iter().map(|s| s.1.len()).max().unwrap_or(0).max(1) as f64;
        let steady = pick(&r.steady) * 100.0;
        series.push((
            "steady state (continuous, days ≥ 2)".to_owned(),
            vec![(1.0, steady), (days, steady)],
        ));
        let y_max = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.1))
            .fold(1e-3f64, f64::max)
            * 1.15;
        let title = format!(
            "{}: {resource} {stem} by day of the second run",
            report.policy
        );
        written.extend(both_formats(
            &dir.join(format!("coldstart_{}_{resource}_{stem}", report.policy)),
            &LineChart {
                title: &title,
                x_desc: "day of the second run",
                y_desc,
                x_max: days + 0.5,
                y_max,
                series: &series,
                markers: true,
                mark: None,
            },
        )?);
    }
    Ok(written)
}
