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

pub mod report;

use anyhow::Context;
use askama::Template;
use plotters::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Machine {
    pub cores: u64,
    pub memory_mib: u64,
    pub cpu: String,
    pub os: String,
}

impl Machine {
    pub fn describe(&self) -> String {
        format!(
            "{} cores, {} MiB, {}, {}",
            self.cores, self.memory_mib, self.cpu, self.os
        )
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Dataset {
    #[serde(alias = "seededUsers")]
    pub users: u64,
    pub photos: u64,
    pub follows_per_user: u64,
    pub likes: u64,
}

impl Dataset {
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.users, "users"),
            (self.photos, "photos"),
            (self.follows_per_user, "follows/user"),
            (self.likes, "likes"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "dataset not recorded".into()
        } else {
            parts.join(", ")
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestStats {
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// Visits in progress over an open-model step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Concurrency {
    pub mean: f64,
    pub peak: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Step {
    pub users: u64,
    /// Open model: visits started per second (absent: closed model).
    pub arrival_rate: Option<f64>,
    pub visits_in_progress: Concurrency,
    pub duration_secs: f64,
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub requests: BTreeMap<String, RequestStats>,
    pub generator_cpu: Option<f64>,
}

/// A load level as people read it: "64 visits/s" (open model) or "128 users".
pub fn level_text(arrival_rate: Option<f64>, users: u64) -> String {
    match arrival_rate {
        Some(r) => format!("{r} visits/s"),
        None => format!("{users} users"),
    }
}

impl Step {
    /// The load level: visits/s (open model) or users (closed model).
    pub fn level(&self) -> f64 {
        self.arrival_rate.unwrap_or(self.users as f64)
    }

    /// "64 visits/s" or "128 users".
    pub fn level_text(&self) -> String {
        level_text(self.arrival_rate, self.users)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BreakingPoint {
    pub users: u64,
    pub arrival_rate: Option<f64>,
    pub rps: f64,
    pub broken_by: String,
    pub saturated: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Experiment {
    pub name: String,
    pub variant: String,
    pub change: Option<String>,
}

impl BreakingPoint {
    /// The load level it held: visits/s (open model) or users.
    pub fn level(&self) -> f64 {
        self.arrival_rate.unwrap_or(self.users as f64)
    }

    /// "64 visits/s" or "128 users".
    pub fn level_text(&self) -> String {
        level_text(self.arrival_rate, self.users)
    }
}

/// The simulated hosts a lab run was placed on (`topology` of the result
/// file; absent: the shared box).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Topology {
    pub text: String,
    pub cores: f64,
}

/// One load-test run (`minigram.loadtest/1`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Run {
    pub stage: String,
    pub commit: String,
    pub machine: Machine,
    pub mode: String,
    pub started_at: String,
    pub dataset: Dataset,
    pub experiment: Option<Experiment>,
    pub steps: Vec<Step>,
    pub breaking_point: Option<BreakingPoint>,
    pub topology: Option<Topology>,
    /// Mode-specific summary (spike: shed, slowest shed, peak RSS, recovery).
    pub summary: Value,
    #[serde(skip)]
    pub file: String,
}

impl Run {
    pub fn label(&self) -> String {
        let mut l = format!("{} {}", self.stage, self.mode);
        if let Some(e) = &self.experiment {
            l.push_str(&format!(" [{} {}]", e.name, e.variant));
        }
        l
    }

    /// A number from the summary (`a.b` for nested keys), formatted, or "–".
    pub fn summary_num(&self, key: &str, digits: usize) -> String {
        let value = key.split('.').fold(&self.summary, |v, k| &v[k]);
        match value.as_f64() {
            Some(x) => format!("{x:.digits$}"),
            None => "–".into(),
        }
    }

    /// Where it ran: its hosts and the cores they were promised, or the
    /// shared box.
    pub fn hosts(&self) -> String {
        match &self.topology {
            Some(t) => format!("{} ({:.2} cores)", t.text, t.cores),
            None => "shared box (every process on all cores)".into(),
        }
    }

    pub fn date(&self) -> &str {
        self.started_at.get(..10).unwrap_or(&self.started_at)
    }

    /// Whether the open model (visits per second) made this run.
    pub fn is_open(&self) -> bool {
        self.steps.iter().any(|s| s.arrival_rate.is_some())
    }

    /// The Universal Scalability Law fitted to a breaking run's steps:
    /// throughput against concurrency (users, or the mean visits in
    /// progress of the open model).
    pub fn usl(&self) -> Option<minigram::usl::UslFit> {
        if self.mode != "breaking" {
            return None;
        }
        let points: Vec<(f64, f64)> = self
            .steps
            .iter()
            .map(|s| match s.arrival_rate {
                Some(_) => (s.visits_in_progress.mean.max(1.0), s.rps),
                None => (s.users as f64, s.rps),
            })
            .collect();
        minigram::usl::fit(&points)
    }

    /// The step the breakdown describes: the breaking point's, or the last.
    pub fn key_step(&self) -> Option<&Step> {
        match &self.breaking_point {
            Some(bp) => self
                .steps
                .iter()
                .rev()
                .find(|s| s.level() == bp.level())
                .or(self.steps.last()),
            None => self.steps.last(),
        }
    }
}

/// A benchmark file, shown as a table of its headline figures.
#[derive(Debug, Clone)]
pub struct Bench {
    pub file: String,
    pub title: String,
    pub commit: String,
    pub machine: String,
    pub dataset: String,
    pub rows: Vec<(String, String)>,
}

/// Everything found in a results directory.
#[derive(Debug, Default)]
pub struct Results {
    pub runs: Vec<Run>,
    pub benches: Vec<Bench>,
    /// Lab reports (`minigram.lab/1`): (file, experiment, question, minutes).
    pub labs: Vec<(String, String, String, String)>,
    /// Files that were not understood, with the reason.
    pub skipped: Vec<(String, String)>,
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(v, |v, k| match k.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(*k),
        })?
        .as_f64()
}

/// A benchmark file's title and headline rows, by its schema.
pub(crate) fn bench(file: String, v: &Value) -> Option<Bench> {
    let schema = v["schema"].as_str()?;
    let f = |path: &[&str], unit: &str, digits: usize| {
        num(v, path).map_or("–".to_owned(), |x| format!("{x:.digits$}{unit}"))
    };
    let storage_title;
    let (title, rows) = match schema {
        "minigram.storagebench/1" => {
            storage_title = format!(
                "Storage microbenchmarks, {} (cargo bench -p {} --bench storage)",
                v["stage"].as_str().unwrap_or("?"),
                v["stage"].as_str().unwrap_or("?")
            );
            (
                storage_title.as_str(),
                v["operations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let mean = r["meanMs"].as_f64().unwrap_or(f64::NAN);
                        let target = r["targetMs"].as_f64().unwrap_or(f64::NAN);
                        (
                            format!(
                                "{} (target ≤ {})",
                                r["operation"].as_str().unwrap_or(""),
                                minigram::results::duration_ms(target)
                            ),
                            format!(
                                "{}{}",
                                minigram::results::duration_ms(mean),
                                if r["met"] == true { "" } else { " (missed)" }
                            ),
                        )
                    })
                    .collect(),
            )
        }
        "minigram.bench-stage1/1" => (
            "Stage 1 benchmark (cargo bench -p stage-1)",
            vec![
                (
                    "seed the dataset".to_owned(),
                    f(&["seed", "seconds"], " s", 1),
                ),
                (
                    "raw Argon2id verify, all cores".into(),
                    f(&["login", "rawVerifyPerSec"], "/s", 1),
                ),
                (
                    "HTTP login".into(),
                    f(&["login", "httpLoginPerSec"], "/s", 1),
                ),
                (
                    "login / raw verify (target ≥ 0.80)".into(),
                    f(&["login", "ratio"], "", 2),
                ),
                (
                    "feed server p50, 1 client (target ≤ 2 ms)".into(),
                    f(&["feed", "lowConcurrency", "0", "serverP50Ms"], " ms", 2),
                ),
                (
                    "feed server p99, 1 client (target ≤ 10 ms)".into(),
                    f(&["feed", "lowConcurrency", "0", "serverP99Ms"], " ms", 2),
                ),
                (
                    "feed server p50, 4 clients".into(),
                    f(&["feed", "lowConcurrency", "1", "serverP50Ms"], " ms", 2),
                ),
                (
                    "feed throughput, 4 clients".into(),
                    f(&["feed", "lowConcurrency", "1", "rps"], "/s", 0),
                ),
            ],
        ),
        "minigram.bench-stage2/1" => (
            "Stage 2 benchmark (cargo bench -p stage-2)",
            vec![
                (
                    "seed stage 2 (COPY)".to_owned(),
                    f(&["seed", "stage2Seconds"], " s", 1),
                ),
                (
                    "GET /health (trivial)".into(),
                    f(&["results", "read", "trivial", "rps"], "/s", 0),
                ),
                (
                    "GET /api/feed, warm cache".into(),
                    f(&["results", "read", "feed", "rps"], "/s", 0),
                ),
                (
                    "feed / trivial (target ≥ 0.70)".into(),
                    f(&["results", "read", "ratio"], "", 2),
                ),
                (
                    "writes/s, stage 2".into(),
                    f(&["results", "writes", "stage2", "writesPerSec"], "/s", 0),
                ),
                (
                    "writes/s, stage 1".into(),
                    f(&["results", "writes", "stage1", "writesPerSec"], "/s", 0),
                ),
                (
                    "server CPU per write, stage 2".into(),
                    f(
                        &["results", "writes", "stage2", "serverSideCpuUsPerWrite"],
                        " µs",
                        0,
                    ),
                ),
                (
                    "server CPU per write, stage 1".into(),
                    f(
                        &["results", "writes", "stage1", "serverSideCpuUsPerWrite"],
                        " µs",
                        0,
                    ),
                ),
                (
                    "cost of the metrics middleware".into(),
                    num(v, &["results", "metricsCost", "slowdown"])
                        .map_or("–".into(), |x| format!("{:.1} %", x * 100.0)),
                ),
            ],
        ),
        "minigram.calibrate/1" => (
            "Load generator cost (loadtests calibrate)",
            vec![
                (
                    "endpoint".to_owned(),
                    v["endpoint"].as_str().unwrap_or("").to_owned(),
                ),
                ("Goose req/s".into(), f(&["goose", "rps"], "/s", 0)),
                (
                    "Goose CPU per request".into(),
                    f(&["goose", "cpuUsPerRequest"], " µs", 1),
                ),
                ("wrk req/s".into(), f(&["wrk", "rps"], "/s", 0)),
                (
                    "wrk CPU per request".into(),
                    f(&["wrk", "cpuUsPerRequest"], " µs", 1),
                ),
            ],
        ),
        _ => return None,
    };
    let machine: Machine = serde_json::from_value(v["machine"].clone()).unwrap_or_default();
    let dataset: Dataset = serde_json::from_value(v["dataset"].clone()).unwrap_or_default();
    Some(Bench {
        file,
        title: title.into(),
        commit: v["commit"].as_str().unwrap_or("unknown").into(),
        machine: machine.describe(),
        dataset: dataset.describe(),
        rows,
    })
}

/// Reads every `*.json` file of `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Results> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the results directory {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut results = Results::default();
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let value: Value = match std::fs::read_to_string(&path)
            .map_err(anyhow::Error::from)
            .and_then(|t| Ok(serde_json::from_str(&t)?))
        {
            Ok(v) => v,
            Err(e) => {
                results
                    .skipped
                    .push((name, format!("not readable JSON: {e}")));
                continue;
            }
        };
        match value["schema"].as_str() {
            Some(s) if s.starts_with("minigram.loadtest/1") => {
                match serde_json::from_value::<Run>(value) {
                    Ok(mut run) => {
                        run.file = name;
                        results.runs.push(run);
                    }
                    Err(e) => results
                        .skipped
                        .push((name, format!("not a loadtest/1 file: {e}"))),
                }
            }
            Some("minigram.lab/1") => results.labs.push((
                name,
                value["experiment"].as_str().unwrap_or("").to_owned(),
                value["question"].as_str().unwrap_or("").to_owned(),
                format!("{:.1}", value["minutes"].as_f64().unwrap_or(0.0)),
            )),
            _ => match bench(name.clone(), &value) {
                Some(b) => results.benches.push(b),
                None => results
                    .skipped
                    .push((name, format!("unknown schema {}", value["schema"]))),
            },
        }
    }
    Ok(results)
}

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
    pub usl: Vec<(String, minigram::usl::UslFit, String)>,
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
