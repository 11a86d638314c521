//! The load-test result file (`minigram.loadtest/1`, docs/results-schema.md)
//! as types: `loadtests` writes its steps with them and the dashboard reads
//! them back with the same types, so a field renamed on one side is renamed
//! on both. Every field has a default, so files written before a field was
//! added still load.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A request's (or an SLO class's) count, errors and percentiles.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestStats {
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
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

/// A list, or (in older files) its one element alone.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<serde_json::Value>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => Vec::new(),
        one => vec![one],
    })
}
