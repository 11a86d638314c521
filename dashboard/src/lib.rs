//! The comparison dashboard: reads the lab's result files (`results/*.json`,
//! formats in `docs/results-schema.md`) and renders one self-contained HTML
//! page — inline SVG charts (plotters), no script, no network — that opens
//! from disk in any browser.
//!
//! The page answers first, then details: where each stage breaks and what
//! saturated (the newest stage1-vs-stage2 lab run, [`overview`]), then one
//! section per experiment (its newest run: question, charts of at most
//! four variants, the verdict per variant, the hosts, a link to its
//! chapter), then, folded, the history: every run's breaking point, USL
//! fit, spike and per-request breakdown. Benchmark files give their
//! headline figures. Each section says once the machine, commit, dataset
//! and date of the runs it shows, and whether the code it measured has
//! changed since ([`freshness`]).

pub mod chapter_charts;
pub mod freshness;
pub mod model;
pub mod overview;
pub mod report;

pub use model::*;

use askama::Template;
use std::collections::BTreeMap;

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
    /// The first screen: where each stage breaks, and why.
    pub headline: Option<overview::Headline>,
    /// The newest run of each experiment.
    pub sections: Vec<overview::Section>,
    pub runs: &'a [Run],
    /// Breaking runs and experiments: the runs with a ladder of users.
    pub ladders: &'a [Run],
    pub spikes: Vec<&'a Run>,
    /// (run label, fit, measured breaking point in users)
    pub usl: Vec<(String, measure::usl::UslFit, String)>,
    pub experiments: Vec<ExperimentView>,
    pub benches: &'a [Bench],
    pub labs: &'a [(String, String, String, String)],
    pub skipped: &'a [(String, String)],
}

/// Renders the whole page.
pub fn render(results: &Results, generated: String) -> anyhow::Result<String> {
    let mut runs = results.runs.clone();
    runs.sort_by(|a, b| a.stage.cmp(&b.stage).then(a.started_at.cmp(&b.started_at)));
    // Breaking runs: the history's tables (each experiment's current
    // charts are drawn per section, from its newest run only).
    let ladders: Vec<Run> = runs
        .iter()
        .filter(|r| r.mode == "breaking")
        .cloned()
        .collect();
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
        headline: overview::headline(results)?,
        sections: overview::sections(results)?,
        experiments: experiments(&runs),
        ladders: &ladders,
        spikes: runs.iter().filter(|r| r.mode == "spike").collect(),
        usl,
        runs: &runs,
        benches: &results.benches,
        labs: &results.labs,
        skipped: &results.skipped,
    };
    Ok(page.render()?)
}
