//! The comparison dashboard: reads the lab's result files (`results/*.json`,
//! formats in `docs/results-schema.md`) and renders one self-contained HTML
//! page — inline SVG charts (plotters), no script, no network — that opens
//! from disk in any browser.
//!
//! Load-test runs give the breaking points, throughput / p95 / error rate
//! against users for every stage on shared axes, the per-request breakdown
//! at each breaking point, and before/after tables for experiments.
//! Benchmark files give their headline figures. Every chart and table
//! names the machine, commit, dataset and date of the runs it shows.

pub mod chapter_charts;
pub mod model;
pub mod report;

pub use model::*;

use askama::Template;
use plotters::prelude::*;
use std::collections::BTreeMap;

const COLORS: [RGBColor; 6] = [
    RGBColor(11, 87, 208),
    RGBColor(227, 116, 0),
    RGBColor(24, 128, 56),
    RGBColor(197, 34, 31),
    RGBColor(123, 31, 162),
    RGBColor(0, 131, 143),
];

/// A line chart of `value(step)` against the load level (users, or
/// visits/s: `x_desc` says which), one series per run, on a log2 axis
/// shared by all runs.
pub fn chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    runs: &[Run],
    value: impl Fn(&Step) -> f64,
    with_usl: bool,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 340)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_users = runs
            .iter()
            .flat_map(|r| r.steps.iter().map(|s| s.level()))
            .fold(2.0f64, f64::max);
        let max_y = runs
            .iter()
            .flat_map(|r| r.steps.iter().map(&value))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d((1f64..max_users * 1.2).log_scale(), 0f64..max_y)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        for (i, run) in runs.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<(f64, f64)> = run
                .steps
                .iter()
                .map(|s| (s.level().max(1.0), value(s)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(run.label())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
            // The fit is against concurrency: on a users axis only.
            if let Some(fit) = (with_usl && !run.is_open()).then(|| run.usl()).flatten() {
                // The fitted curve, dashed, from 1 user to past the last step.
                let curve: Vec<(f64, f64)> = (0..=120)
                    .map(|i| 2f64.powf(i as f64 / 120.0 * max_users.log2() + 0.1))
                    .map(|n| (n, fit.predict(n).min(max_y)))
                    .collect();
                chart
                    .draw_series(DashedLineSeries::new(curve, 6, 4, color.stroke_width(1)))?
                    .label(format!(
                        "{} USL fit (σ {:.3}, κ {:.5})",
                        run.stage, fit.sigma, fit.kappa
                    ))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(1))
                    });
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// A row of a before/after table.
pub struct Compare {
    pub metric: String,
    pub before: String,
    pub after: String,
    pub change: String,
}

/// An experiment's baseline and change, side by side.
pub struct ExperimentView {
    pub name: String,
    pub change: String,
    pub rows: Vec<Compare>,
}

fn compare(metric: &str, before: f64, after: f64, digits: usize) -> Compare {
    let change = if before.abs() > 1e-12 {
        format!("{:+.1} %", (after - before) / before * 100.0)
    } else {
        "–".into()
    };
    Compare {
        metric: metric.into(),
        before: format!("{before:.digits$}"),
        after: format!("{after:.digits$}"),
        change,
    }
}

fn experiments(runs: &[Run]) -> Vec<ExperimentView> {
    let mut by_name: BTreeMap<&str, (Option<&Run>, Vec<&Run>)> = BTreeMap::new();
    for run in runs {
        if let Some(e) = &run.experiment {
            let slot = by_name.entry(&e.name).or_default();
            // Files are read in name order; a later run of a variant wins.
            if e.variant == "baseline" {
                slot.0 = Some(run);
            } else {
                slot.1.push(run);
            }
        }
    }
    by_name
        .into_iter()
        .filter_map(|(name, (b, changes))| {
            let b = b?;
            // The change is compared on the baseline's dataset only (an
            // experiment may also vary the dataset size: index-impact).
            let c = *changes.iter().rev().find(|c| {
                c.dataset.photos == b.dataset.photos && c.dataset.users == b.dataset.users
            })?;
            let (bs, cs) = (b.key_step()?, c.key_step()?);
            let bp = |r: &Run| r.breaking_point.as_ref().map_or(0.0, |p| p.level());
            let mut rows = vec![
                compare("throughput (req/s)", bs.rps, cs.rps, 1),
                compare("p50 (ms)", bs.p50_ms, cs.p50_ms, 2),
                compare("p95 (ms)", bs.p95_ms, cs.p95_ms, 2),
                compare("p99 (ms)", bs.p99_ms, cs.p99_ms, 2),
                compare(
                    "error rate (%)",
                    bs.error_rate * 100.0,
                    cs.error_rate * 100.0,
                    2,
                ),
                compare(
                    if b.is_open() {
                        "breaking point (visits/s)"
                    } else {
                        "breaking point (users)"
                    },
                    bp(b),
                    bp(c),
                    0,
                ),
            ];
            for (req, stats) in &bs.requests {
                if let Some(after) = cs.requests.get(req) {
                    rows.push(compare(
                        &format!("{req} p95 (ms)"),
                        stats.p95_ms,
                        after.p95_ms,
                        2,
                    ));
                }
            }
            let saturated = |r: &Run| {
                r.breaking_point
                    .as_ref()
                    .map_or("SLO held".to_owned(), |p| p.saturated.clone())
            };
            rows.push(Compare {
                metric: "saturated first".into(),
                before: saturated(b),
                after: saturated(c),
                change: String::new(),
            });
            Some(ExperimentView {
                name: name.into(),
                change: c
                    .experiment
                    .as_ref()
                    .and_then(|e| e.change.clone())
                    .unwrap_or_default(),
                rows,
            })
        })
        .collect()
}

#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct Page<'a> {
    pub generated: String,
    pub runs: &'a [Run],
    /// Breaking runs and experiments: the runs with a ladder of users.
    pub ladders: &'a [Run],
    pub spikes: Vec<&'a Run>,
    /// (run label, fit, measured breaking point in users)
    pub usl: Vec<(String, measure::usl::UslFit, String)>,
    pub charts: Vec<(String, String)>,
    pub experiments: Vec<ExperimentView>,
    pub benches: &'a [Bench],
    pub labs: &'a [(String, String, String, String)],
    pub skipped: &'a [(String, String)],
}

/// Renders the whole page.
pub fn render(results: &Results, generated: String) -> anyhow::Result<String> {
    let mut runs = results.runs.clone();
    runs.sort_by(|a, b| a.stage.cmp(&b.stage).then(a.started_at.cmp(&b.started_at)));
    let mut charts = Vec::new();
    // Curves against users only make sense for ladders (breaking runs,
    // most experiments); a spike's 8 → 2000 → 8 users is a table, not a
    // curve, and a fixed-load experiment's one step is not a ladder.
    let ladders: Vec<Run> = runs
        .iter()
        .filter(|r| r.mode == "breaking")
        .cloned()
        .collect();
    // One set of charts per load model: users and visits/s are not one axis.
    let models: [(&str, &str, bool); 2] = [
        ("visits/s", "visits started per second (log scale)", true),
        ("users", "concurrent users (log scale)", false),
    ];
    for (unit, x_desc, open) in models {
        let group: Vec<Run> = ladders
            .iter()
            .filter(|r| r.is_open() == open)
            .cloned()
            .collect();
        if group.is_empty() {
            continue;
        }
        // The figure's id, for links and tests: throughput-open, p95-closed...
        let model = if open { "open" } else { "closed" };
        charts.push((
            format!("throughput-{model}"),
            chart(
                &format!("Throughput vs {unit} (dashed: Universal Scalability Law fit)"),
                x_desc,
                "requests / s",
                &group,
                |s| s.rps,
                true,
            )?,
        ));
        charts.push((
            format!("p95-{model}"),
            chart(
                &format!("p95 latency vs {unit}"),
                x_desc,
                "ms",
                &group,
                |s| s.p95_ms,
                false,
            )?,
        ));
        charts.push((
            format!("errors-{model}"),
            chart(
                &format!("Error rate vs {unit}"),
                x_desc,
                "% of requests",
                &group,
                |s| s.error_rate * 100.0,
                false,
            )?,
        ));
    }
    let usl = ladders
        .iter()
        .filter_map(|r| {
            let bp = r
                .breaking_point
                .as_ref()
                .map_or("none".to_owned(), |b| b.level_text());
            Some((r.label(), r.usl()?, bp))
        })
        .collect();
    let page = Page {
        generated,
        experiments: experiments(&runs),
        ladders: &ladders,
        spikes: runs.iter().filter(|r| r.mode == "spike").collect(),
        usl,
        runs: &runs,
        charts,
        benches: &results.benches,
        labs: &results.labs,
        skipped: &results.skipped,
    };
    Ok(page.render()?)
}
