//! One measured step: a fresh Goose attack with a fixed number of users for
//! a fixed time, plus what the server and the generator itself reported
//! over it. Goose keeps no per-phase statistics, so every step is its own
//! attack; its metrics are reset once all users are launched, so the
//! ramp-up is not measured.
//!
//! **Coordinated omission.** The journeys are a closed model: each user
//! waits for an answer, thinks, and sends the next request, so a slow
//! server is sent fewer requests. Goose's `--co-mitigation average`
//! back-fills the requests a user *would* have sent during a stall; the
//! percentiles here (and the SLO check) use those corrected times.

use anyhow::Context;
use goose::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::journeys::{self, JourneyConfig};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStats {
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// A step, as written into the result file (`steps[]`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub users: usize,
    pub duration_secs: f64,
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub requests: BTreeMap<String, RequestStats>,
    /// `/api/metrics` of each host at the end of the step.
    pub server: Vec<Value>,
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
    /// Shed answers (503/429) as the client timed them: count, p50, p99, max (ms).
    pub shed_client: ShedTimes,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShedTimes {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl ShedTimes {
    fn of(mut micros: Vec<u64>) -> Self {
        if micros.is_empty() {
            return Self::default();
        }
        micros.sort_unstable();
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Self {
            count: micros.len() as u64,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

impl Step {
    /// Request names whose p95 exceeds `ms`, worst first.
    pub fn slow(&self, ms: f64) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .requests
            .iter()
            .filter(|(_, r)| r.p95_ms > ms)
            .map(|(n, r)| (n.clone(), r.p95_ms))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
}

pub struct Plan<'a> {
    pub hosts: &'a [String],
    pub users: usize,
    pub secs: u64,
    pub journeys: JourneyConfig,
    /// Where Goose writes its HTML report of this step, if anywhere.
    pub report: Option<&'a Path>,
    /// Measure from the first request (single-step modes), instead of
    /// resetting the metrics once all users are launched (ladder steps).
    pub include_warmup: bool,
    /// Only `GET /api/explore`, no think time (`calibrate`).
    pub explore_only: bool,
}

/// The plan of every step of a run: the same hosts, journeys and report,
/// for any users, seconds and "is it the last step" (which writes Goose's
/// HTML report).
pub fn planner<'a>(
    hosts: &'a [String],
    journeys: JourneyConfig,
    report: &'a Path,
    include_warmup: bool,
) -> impl Fn(usize, u64, bool) -> Plan<'a> + 'a {
    move |users, secs, last| Plan {
        hosts,
        users,
        secs,
        journeys: journeys.clone(),
        report: last.then_some(report),
        include_warmup,
        explore_only: false,
    }
}

/// The server's `/api/metrics` (and its request counter).
pub async fn server_metrics(client: &reqwest::Client, host: &str) -> anyhow::Result<Value> {
    let v: Value = client
        .get(format!("{host}/api/metrics?history=120"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("cannot reach {host}"))?
        .error_for_status()
        .with_context(|| format!("{host}/api/metrics answered an error"))?
        .json()
        .await
        .with_context(|| format!("{host}/api/metrics is not JSON: is this a Minigram server?"))?;
    anyhow::ensure!(
        v["stage"].is_string() && v["requestsTotal"].is_u64(),
        "{host} does not look like Minigram: /api/metrics has no stage"
    );
    Ok(v)
}

fn percentile(data: &goose::metrics::GooseRequestMetricTimingData, q: f32) -> f64 {
    data.percentile_us(q) as f64 / 1000.0
}

/// A percentile of merged time buckets (each bucket counted at its floor).
fn merged_percentile(buckets: &BTreeMap<u64, u64>, q: f64) -> f64 {
    let total: u64 = buckets.values().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bucket, n) in buckets {
        seen += n;
        if seen >= rank {
            return *bucket as f64 / 1000.0;
        }
    }
    0.0
}

pub async fn run(plan: Plan<'_>) -> anyhow::Result<Step> {
    let client = reqwest::Client::new();
    let mut before = 0;
    for h in plan.hosts {
        before += server_metrics(&client, h).await?["requestsTotal"]
            .as_u64()
            .unwrap_or(0);
    }
    let users = plan.users.to_string();
    let secs = plan.secs.to_string();
    let mut args: Vec<String> = vec![
        "--users".into(),
        users.clone(),
        // All users start within about a second; metrics reset after that.
        "--increase-rate".into(),
        users,
        "--run-time".into(),
        secs,
        "--co-mitigation".into(),
        "average".into(),
        "--quiet".into(),
        "--no-print-metrics".into(),
        "--no-error-summary".into(),
        // No controllers: several attacks run one after another.
        "--no-telnet".into(),
    ];
    // Goose's --host overrides every scenario's host: give it only when
    // there is one host; with several, each scenario carries its own.
    if plan.hosts.len() == 1 {
        args.push("--host".into());
        args.push(plan.hosts[0].clone());
    }
    if plan.include_warmup {
        args.push("--no-reset-metrics".into());
    }
    if let Some(report) = plan.report {
        args.push("--report-file".into());
        args.push(report.display().to_string());
    }
    let config = goose::config::GooseConfiguration::parse_args_default(&args)
        .map_err(|e| anyhow::anyhow!("goose configuration: {e}"))?;
    let mut attack =
        GooseAttack::initialize_with_config(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let scenarios = if plan.explore_only {
        vec![journeys::explore_only(&plan.hosts[0]).map_err(|e| anyhow::anyhow!("{e}"))?]
    } else {
        journeys::scenarios(plan.hosts, plan.journeys.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?
    };
    for s in scenarios {
        attack = attack.register_scenario(s);
    }
    let me = std::process::id();
    let (cpu0, busy0, t0) = (
        minigram::machine::process_cpu_seconds(me),
        minigram::machine::machine_busy_seconds(),
        Instant::now(),
    );
    journeys::take_shed_micros();
    let metrics = attack
        .execute()
        .await
        .map_err(|e| anyhow::anyhow!("load test failed: {e}"))?;
    let shed_client = ShedTimes::of(journeys::take_shed_micros());
    let wall = t0.elapsed().as_secs_f64().max(0.001);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let own = minigram::machine::process_cpu_seconds(me) - cpu0;
    let busy = minigram::machine::machine_busy_seconds() - busy0;
    let mut server = Vec::new();
    let mut after = 0;
    let mut lost = false;
    for h in plan.hosts {
        // A server that died during the step (the crash test kills one on
        // purpose) leaves no metrics: the client's side is still a result.
        match server_metrics(&client, h).await {
            Ok(m) => {
                after += m["requestsTotal"].as_u64().unwrap_or(0);
                server.push(m);
            }
            Err(e) => {
                eprintln!("warning: no server metrics after the step: {e:#}");
                lost = true;
                server.push(Value::Null);
            }
        }
    }

    let duration = (metrics.duration as f64).max(1.0);
    let mut requests = BTreeMap::new();
    let (mut total, mut failed) = (0u64, 0u64);
    // All requests' times together, bucket -> count (µs bucket floors).
    let mut all: BTreeMap<u64, u64> = BTreeMap::new();
    for agg in metrics.requests.values() {
        let name = agg.path.clone();
        let data = agg
            .coordinated_omission_data
            .as_ref()
            .unwrap_or(&agg.raw_data);
        let count = (agg.success_count + agg.fail_count) as u64;
        total += count;
        failed += agg.fail_count as u64;
        for (bucket, n) in data.times_us.iter() {
            *all.entry(*bucket).or_default() += *n as u64;
        }
        let entry = requests.entry(name).or_insert(RequestStats {
            count: 0,
            errors: 0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
        });
        entry.count += count;
        entry.errors += agg.fail_count as u64;
        entry.p50_ms = entry.p50_ms.max(percentile(data, 0.5));
        entry.p95_ms = entry.p95_ms.max(percentile(data, 0.95));
        entry.p99_ms = entry.p99_ms.max(percentile(data, 0.99));
    }
    let mut sample_errors: Vec<String> = metrics
        .errors
        .values()
        .map(|e| format!("{} × {}", e.occurrences, e.error))
        .collect();
    sample_errors.truncate(5);
    Ok(Step {
        users: plan.users,
        duration_secs: duration,
        rps: total as f64 / duration,
        error_rate: if total == 0 {
            0.0
        } else {
            failed as f64 / total as f64
        },
        p50_ms: merged_percentile(&all, 0.5),
        p95_ms: merged_percentile(&all, 0.95),
        p99_ms: merged_percentile(&all, 0.99),
        requests,
        server,
        generator_cpu: (own / (wall * cores)).clamp(0.0, 1.0),
        generator_cpu_seconds: own,
        rest_of_machine_cpu: ((busy - own) / (wall * cores)).clamp(0.0, 1.0),
        client_requests: total,
        // The first /api/metrics call of each host is itself counted.
        server_requests: if lost {
            0
        } else {
            after.saturating_sub(before + plan.hosts.len() as u64)
        },
        sample_errors,
        shed_client,
    })
}

/// The step as JSON for the result file.
pub fn to_json(step: &Step) -> Value {
    json!(step)
}
