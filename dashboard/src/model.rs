//! The result files as the dashboard reads them: load-test runs (steps,
//! breaking points, the machine and dataset they ran on), lab experiments
//! and benchmarks, loaded from `results/*.json` (`docs/results-schema.md`).

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use measure::machine::Machine;

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

pub use measure::schema::{Concurrency, RequestStats, Step, level_text};

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
    pub fn usl(&self) -> Option<measure::usl::UslFit> {
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
        measure::usl::fit(&points)
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

pub use measure::schema::{LabReport, LabVariant};

/// A lab report and the name of its file.
#[derive(Debug, Clone)]
pub struct LabFile {
    pub file: String,
    pub report: LabReport,
}

/// A benchmark file, shown as a table of its headline figures.
#[derive(Debug, Clone)]
pub struct Bench {
    pub file: String,
    pub title: String,
    pub commit: String,
    /// The command that wrote it (to measure it again).
    pub command: String,
    /// "current code" or why it is stale (`freshness.rs`; set by `load`).
    pub age: String,
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
    /// The same reports, typed, in file-name (so time) order.
    pub lab_reports: Vec<LabFile>,
    /// Files that were not understood, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Whether each reference file is older than the code it measures,
    /// by file name (`freshness.rs`).
    pub ages: BTreeMap<String, crate::freshness::Age>,
}

impl Results {
    /// "current code", or why the file is stale (`freshness.rs`).
    pub fn age_of(&self, file: &str) -> String {
        self.ages
            .get(file)
            .map_or_else(|| "code age unknown".to_owned(), |a| a.text())
    }
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
                                measure::results::duration_ms(target)
                            ),
                            format!(
                                "{}{}",
                                measure::results::duration_ms(mean),
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
        command: v["command"]
            .as_str()
            .unwrap_or("(command not recorded)")
            .into(),
        age: String::new(),
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
    let checker = crate::freshness::Checker::for_results(dir);
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
        if let Some(age) = checker.of(&value) {
            results.ages.insert(name.clone(), age);
        }
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
            Some("minigram.lab/1") => {
                match serde_json::from_value::<LabReport>(value.clone()) {
                    Ok(report) => results.lab_reports.push(LabFile {
                        file: name.clone(),
                        report,
                    }),
                    Err(e) => results
                        .skipped
                        .push((name.clone(), format!("not a lab/1 report: {e}"))),
                }
                results.labs.push((
                    name,
                    value["experiment"].as_str().unwrap_or("").to_owned(),
                    value["question"].as_str().unwrap_or("").to_owned(),
                    format!("{:.1}", value["minutes"].as_f64().unwrap_or(0.0)),
                ))
            }
            // Read by the report's `crosscheck` block; its age is kept above.
            Some(measure::schema::Crosscheck::SCHEMA) => {}
            _ => match bench(name.clone(), &value) {
                Some(mut b) => {
                    b.age = results.age_of(&name);
                    results.benches.push(b)
                }
                None => results
                    .skipped
                    .push((name, format!("unknown schema {}", value["schema"]))),
            },
        }
    }
    Ok(results)
}
