//! The result files (docs/results-schema.md) as types: a load-test step
//! (`minigram.loadtest/1`) and the lab report (`minigram.lab/1`).
//! `loadtests` writes them with these types and the dashboard reads them
//! back with the same ones, so a field renamed on one side is renamed on
//! both. Every field has a default, so files written before a field was
//! added still load.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::machine::Machine;
use crate::spread::{Difference, Spread};

/// A request's (or an SLO class's) count, errors and percentiles.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestStats {
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// SLO classes only: a one-sided 95 % lower confidence bound on the
    /// p95 from this many samples, which the SLO judges (0: not recorded —
    /// files from before it, and single requests).
    #[serde(skip_serializing_if = "is_zero_ms")]
    pub p95_low_ms: f64,
}

fn is_zero_ms(v: &f64) -> bool {
    *v == 0.0
}

/// Visits in progress over a step (sampled every 100 ms).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Concurrency {
    pub mean: f64,
    pub peak: i64,
    /// Open model: visits that started over 50 ms after their scheduled
    /// time because every slot was busy, and the latest (ms).
    pub late_starts: u64,
    pub latest_start_ms: f64,
}

/// What the server itself did over the step (summed over hosts).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerWork {
    pub cpu_seconds: f64,
    pub password_hashes: u64,
    pub password_hash_cpu_seconds: f64,
}

/// Shed answers (503/429) as the client timed them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ShedTimes {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl ShedTimes {
    /// From the answers' times in microseconds (an HDR histogram, as every
    /// other percentile of the lab).
    pub fn of(micros: &[u64]) -> Self {
        let Ok(mut h) = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3) else {
            return Self::default();
        };
        for &m in micros {
            h.saturating_record(m.max(1));
        }
        if h.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// What a simulated host used over a step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostUse {
    pub name: String,
    /// The budget in cores (`None`: unlimited).
    pub cpus: Option<f64>,
    pub cpu_seconds: f64,
    /// Mean cores used over the interval.
    pub cores: f64,
    /// Of its budget (0..1, slightly above 1 at most from rounding).
    pub budget_share: Option<f64>,
    /// Share of CFS periods in which the host hit its quota and waited.
    pub throttled_share: f64,
}

/// A step, as written into the result file (`steps[]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Step {
    /// Closed model: concurrent users. Open model: the generator's slots
    /// (the most visits it could have in progress).
    pub users: usize,
    /// Open model: visits started per second (`None`: closed model).
    pub arrival_rate: Option<f64>,
    pub visits_in_progress: Concurrency,
    pub duration_secs: f64,
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub requests: BTreeMap<String, RequestStats>,
    /// The same per SLO class (`reads`, `writes`, `sign-in`).
    pub classes: BTreeMap<String, RequestStats>,
    /// Sign-ins and registrations among all requests (0..1).
    pub sign_in_share: f64,
    pub server_work: ServerWork,
    /// `/api/metrics` of each host at the end of the step (files from
    /// before several hosts hold one object here).
    #[serde(deserialize_with = "one_or_many")]
    pub server: Vec<serde_json::Value>,
    /// Share of the whole machine's CPU the generator used (0..1).
    pub generator_cpu: f64,
    /// The generator's CPU time in the step (seconds).
    pub generator_cpu_seconds: f64,
    /// Share of the whole machine's CPU everything else used (0..1).
    pub rest_of_machine_cpu: f64,
    /// Requests the client completed vs the server's own counter.
    pub client_requests: u64,
    pub server_requests: u64,
    /// Up to five distinct failure messages, for the console.
    pub sample_errors: Vec<String>,
    /// Shed answers (503/429) as the client timed them.
    pub shed_client: ShedTimes,
    /// Each simulated host's CPU over the step, from its cgroup's own
    /// accounting (empty on the shared box).
    pub host_cpu: Vec<HostUse>,
    /// Seconds the step waited before starting for the servers to finish
    /// what the step before left in flight (absent in older files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_secs: Option<f64>,
    /// Why `client_requests` and `server_requests` differ (absent in
    /// older files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<CountsAtEdges>,
}

/// The requests one side of a step counts and the other does not: the
/// servers count every request that finished between their two counter
/// reads, the client only those Goose kept. So `server_requests` ≈
/// `client_requests` + `launch_requests` + `in_flight_at_start` (less
/// what was still in flight when the step ended, which neither counts).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct CountsAtEdges {
    /// Requests the servers were still serving when the step began (a
    /// spike's recovery starts on its backlog).
    pub in_flight_at_start: u64,
    /// Requests of the second Goose's users launched in: the generator
    /// timed them, Goose reset them out of its counts.
    pub launch_requests: u64,
}

impl Step {
    /// The load level: visits per second (open model) or users (closed).
    pub fn level(&self) -> f64 {
        self.arrival_rate.unwrap_or(self.users as f64)
    }

    /// "64 visits/s" or "128 users".
    pub fn level_text(&self) -> String {
        level_text(self.arrival_rate, self.users as u64)
    }
}

/// A load level as people read it: "64 visits/s" (open model) or "128 users".
pub fn level_text(arrival_rate: Option<f64>, users: u64) -> String {
    match arrival_rate {
        Some(r) => format!("{r} visits/s"),
        None => format!("{users} users"),
    }
}

/// A lab report (`minigram.lab/1`): what the experiment asked and changed,
/// where and when it ran, and per variant the result file its run wrote.
/// The fields every reader uses are typed; the experiment-specific tables
/// (a variant's figures at its breaking point, the USL over hosts, the
/// round trips...) travel in `rest`, written and read by the lab's chapter.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabReport {
    pub schema: String,
    pub experiment: String,
    pub question: String,
    pub change: String,
    pub commit: String,
    pub machine: Machine,
    pub started_at: String,
    /// The command as the user typed it.
    pub command: String,
    pub minutes: f64,
    /// `breaking` (a breaking-point search per variant) or `fixed` (one
    /// step at the same load).
    pub method: String,
    /// How many times each variant ran, interleaved (A B C, A B C …);
    /// 0 in files from before repeats, which are single runs.
    #[serde(skip_serializing_if = "is_zero")]
    pub repeats: usize,
    /// The comparisons the experiment names, B ÷ A, with their spread.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<Comparison>,
    pub variants: Vec<LabVariant>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The directories whose code a run of `stage` measures (a binary name,
/// `stage-1` or `stage-2`, as result files record it): the stage's own
/// crate and the app code both stages share. A reference run is stale
/// once any of them changed after the commit it was measured at (the
/// dashboard's `freshness` reads this).
pub fn code_paths(stage: &str) -> Vec<String> {
    let mut paths = vec!["shared/src".to_owned()];
    if matches!(stage, "stage-1" | "stage-2") {
        paths.push(format!("{stage}/src"));
    }
    paths
}

/// One variant of a lab report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabVariant {
    pub label: String,
    /// The stage binary it ran (`stage-1`, `stage-2`).
    pub stage: String,
    /// Its flags beyond the baseline's.
    pub flags: Vec<String>,
    /// The load-test result file of its run, beside the report (with
    /// repeats: the repeat whose figures `rest` holds, see `spread`).
    pub result_file: Option<String>,
    /// Each repeat's headline figures, in the order they ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<RepeatFigures>,
    /// Those figures over the repeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<VariantSpread>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// One repeat of a variant: its run's file and the figures its spread is
/// made of, at the compared step (the breaking point, or the fixed load).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RepeatFigures {
    /// 1 for the first round of the interleaved order.
    pub repeat: usize,
    pub result_file: String,
    /// The last level that held the SLO (visits/s or users; `None`: the
    /// SLO held at every step, or a fixed-load experiment).
    pub breaking_point: Option<f64>,
    /// Requests per second at the compared step.
    pub rps: f64,
    /// p95 of all requests and of each SLO class there.
    pub p95_ms: f64,
    pub class_p95_ms: BTreeMap<String, f64>,
    /// What the verdict named as saturated (at the first failing step, or
    /// the busiest at a fixed load), and its short name.
    pub saturated: String,
    pub saturated_first: String,
}

/// A variant's figures over its repeats.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VariantSpread {
    pub repeats: usize,
    /// Which repeat the variant's detailed figures come from: the one with
    /// the median breaking point (or median p95 at a fixed load).
    pub representative: usize,
    /// Over the repeats that broke the SLO; `held` says how many did not.
    pub breaking_point: Option<Spread>,
    pub held: usize,
    pub rps: Option<Spread>,
    pub p95_ms: Option<Spread>,
    pub class_p95_ms: BTreeMap<String, Spread>,
    /// What saturated first, and in how many repeats, most named first.
    pub saturated: Vec<Named>,
}

/// A name and in how many repeats it came up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Named {
    pub what: String,
    pub repeats: usize,
}

/// A figure two variants are compared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Figure {
    /// The last level that held the SLO (higher is better).
    BreakingPoint,
    /// Requests per second at that level (higher is better).
    Rps,
    /// p95 of all requests at the compared step (lower is better).
    P95Ms,
}

impl Figure {
    pub fn text(self) -> &'static str {
        match self {
            Figure::BreakingPoint => "breaking point",
            Figure::Rps => "req/s at the SLO",
            Figure::P95Ms => "p95 of all requests",
        }
    }

    /// The figure of one repeat.
    pub fn of(self, r: &RepeatFigures) -> Option<f64> {
        match self {
            Figure::BreakingPoint => r.breaking_point,
            Figure::Rps => Some(r.rps),
            Figure::P95Ms => Some(r.p95_ms),
        }
    }
}

/// `variant` ÷ `baseline` for one figure, over paired repeats.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub baseline: String,
    pub variant: String,
    pub figure: Figure,
    pub difference: Difference,
}

impl LabReport {
    pub const SCHEMA: &'static str = "minigram.lab/1";

    /// The date it started (`YYYY-MM-DD`).
    pub fn date(&self) -> &str {
        self.started_at.get(..10).unwrap_or(&self.started_at)
    }

    /// Whether its variants ran on simulated hosts (a `topology` record)
    /// rather than the shared box.
    pub fn on_hosts(&self) -> bool {
        self.variants
            .iter()
            .any(|v| v.rest.get("topology").is_some_and(Value::is_object))
    }

    /// The code the experiment measures: that of every stage its
    /// variants ran (see [`code_paths`]).
    pub fn code_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .variants
            .iter()
            .flat_map(|v| code_paths(&v.stage))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

/// A list, or (in older files) its one element alone.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<serde_json::Value>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => Vec::new(),
        one => vec![one],
    })
}

/// The outside-generator cross-check (`minigram.crosscheck/1`, written by
/// crosscheck/run.py): stage 1's breaking point found by the lab's
/// generator and by Locust, interleaved repeats on fresh servers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Crosscheck {
    pub command: String,
    pub commit: String,
    pub started_at: String,
    pub stage: String,
    pub test_bed: String,
    pub model: String,
    pub repeats: usize,
    pub runs: Vec<CrosscheckRun>,
}

impl Crosscheck {
    pub const SCHEMA: &'static str = "minigram.crosscheck/1";
    /// The lab's own generator's runs are named so.
    pub const OURS: &'static str = "loadtests";
}

/// One search of one generator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CrosscheckRun {
    /// `loadtests (Goose)` or `locust <version>`.
    pub generator: String,
    pub repeat: usize,
    /// The last level (closed model: users) that held the SLO, and its
    /// req/s (`None`: it never broke).
    pub users: Option<f64>,
    pub rps: Option<f64>,
    pub broken_by: Option<String>,
    /// The generator's own CPU in the first failing step (cores): a
    /// generator near a core of its own is its own limit.
    pub generator_cores_at_failure: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every lab report in results/ reads into the typed report and writes
    /// back to the same JSON: the typed fields name what the files hold,
    /// and nothing is lost in `rest`.
    #[test]
    fn the_reference_lab_reports_round_trip() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
        let mut read = 0;
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".report.json") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let original: Value = serde_json::from_str(&text).unwrap();
            let typed: LabReport = serde_json::from_str(&text).unwrap();
            assert_eq!(typed.schema, LabReport::SCHEMA, "{name}");
            assert!(
                !typed.experiment.is_empty() && typed.machine.cores > 0,
                "{name}"
            );
            assert!(
                typed.variants.iter().all(|v| v.result_file.is_some()),
                "{name}: every variant names its run's file"
            );
            assert_eq!(serde_json::to_value(&typed).unwrap(), original, "{name}");
            read += 1;
        }
        assert!(read >= 10, "{read} lab reports");
    }
}
