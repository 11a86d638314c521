//! One measured step: a fresh Goose attack at one load level for a fixed
//! time, plus what the server and the generator itself reported over it.
//! Goose keeps no per-phase statistics, so every step is its own attack;
//! its metrics are reset once all users are launched, so the ramp-up is
//! not measured.
//!
//! Two load models (the result file says which made it):
//!
//! - **open** (`--arrival-rate`): visits start on a schedule
//!   (`arrivals.rs`); percentiles are the generator's own, timed from each
//!   request's intended send time (a visit's first request from its
//!   scheduled start), so there is no coordinated omission by construction;
//!   the visits in progress are an outcome.
//! - **closed** (`--users`): each user waits for an answer, thinks, and
//!   sends the next request, so a slow server is sent fewer requests
//!   (coordinated omission: latency under overload reads low). Times are
//!   the same generator-side times, from the send. Goose's own
//!   `--co-mitigation` is not used: it assumes every iteration runs the
//!   same requests, and the visits here are picked at random, so it would
//!   back-fill requests that were never due.
//!
//! Every step also has its percentiles per SLO class (`slo.rs`), the share
//! of sign-ins among its requests, and the server's CPU and password-hash
//! work over the step (from `/api/metrics` before and after).

use anyhow::Context;
use goose::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::arrivals;
use crate::hosts::{self, Host};
use crate::journeys::{self, JourneyConfig};
use crate::slo::Class;
pub use measure::schema::{Concurrency, CountsAtEdges, RequestStats, ServerWork, ShedTimes, Step};

/// The slowest request of a class in a step: (name, p95).
pub fn slowest_of(step: &Step, class: Class) -> Option<(&str, f64)> {
    step.requests
        .iter()
        .filter(|(n, _)| Class::of(n) == class)
        .map(|(n, r)| (n.as_str(), r.p95_ms))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// How much load a step offers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Closed model: this many users, each visiting again after a visit.
    Users(usize),
    /// Open model: visits started per second, with at most `slots` in
    /// progress.
    Rate { per_sec: f64, slots: usize },
}

impl Load {
    /// "32 users" / "40 visits/s".
    pub fn describe(&self) -> String {
        match self {
            Load::Users(n) => format!("{n} users"),
            Load::Rate { per_sec, .. } => format!("{per_sec} visits/s"),
        }
    }
}

pub struct Plan<'a> {
    pub hosts: &'a [String],
    pub load: Load,
    pub secs: u64,
    pub journeys: JourneyConfig,
    /// Where Goose writes its HTML report of this step, if anywhere.
    pub report: Option<&'a Path>,
    /// Measure from the first request (single-step modes), instead of
    /// resetting the metrics once all users are launched (ladder steps).
    pub include_warmup: bool,
    /// Only `GET /api/explore`, no think time (`calibrate`).
    pub explore_only: bool,
    /// The simulated hosts of a topology run, whose CPU the step records
    /// (none on the shared box).
    pub cpu_hosts: &'a [Arc<Host>],
    /// Wait before the step until the servers have nothing in flight
    /// (`settle`). Off where the step is meant to see what the last one
    /// left behind: a spike's recovery.
    pub settle: bool,
}

/// The plan of every step of a run: the same hosts, journeys and report,
/// for any load, seconds and "is it the last step" (which writes Goose's
/// HTML report).
pub fn planner<'a>(
    hosts: &'a [String],
    journeys: JourneyConfig,
    report: &'a Path,
    include_warmup: bool,
    cpu_hosts: &'a [Arc<Host>],
) -> impl Fn(Load, u64, bool) -> Plan<'a> + 'a {
    move |load, secs, last| Plan {
        hosts,
        load,
        secs,
        journeys: journeys.clone(),
        report: last.then_some(report),
        include_warmup,
        explore_only: false,
        cpu_hosts,
        settle: true,
    }
}

/// Requests a server is serving, from its `/api/metrics`, less that call.
fn in_flight(metrics: &Value) -> u64 {
    (metrics["activeRequests"].as_i64().unwrap_or(0) - 1).max(0) as u64
}

/// The longest a step waits for the servers to go quiet.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// Waits until no server has a request in flight but the one asking
/// (its own `/api/metrics`), up to `SETTLE_LIMIT`; after a backlog, half a
/// second more for the work that follows the last answers (group
/// commit's batch, the fan-out queue). Without it a step after an
/// overloaded one (the ladder's doubling goes well past the break) starts
/// on a backlog, and the breaking point depends on the path the ladder
/// took. Returns the seconds it waited.
async fn settle(client: &reqwest::Client, hosts: &[String]) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let mut waited = false;
    loop {
        let mut busy = 0;
        for h in hosts {
            busy += in_flight(&server_metrics(client, h, 0).await?);
        }
        if busy == 0 {
            break;
        }
        if t0.elapsed() >= SETTLE_LIMIT {
            eprintln!(
                "  servers still busy after {} s ({busy} requests in flight): starting anyway",
                SETTLE_LIMIT.as_secs()
            );
            break;
        }
        waited = true;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if waited {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// The server's `/api/metrics` (and its request counter), with its last
/// `history` one-second samples: a step keeps only the seconds it covered
/// (the samples before belong to the steps before, in their own records).
pub async fn server_metrics(
    client: &reqwest::Client,
    host: &str,
    history: usize,
) -> anyhow::Result<Value> {
    let v: Value = client
        .get(format!("{host}/api/metrics?history={history}"))
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

/// What a host's `/api/metrics` counts, to take differences over a step.
#[derive(Default)]
struct Counters {
    requests: u64,
    cpu: f64,
    hashes: u64,
    hash_cpu: f64,
}

impl Counters {
    fn of(m: &Value) -> Self {
        Self {
            requests: m["requestsTotal"].as_u64().unwrap_or(0),
            cpu: m["processCpuSeconds"].as_f64().unwrap_or(0.0),
            hashes: m["passwordHashesTotal"].as_u64().unwrap_or(0),
            hash_cpu: m["passwordHashCpuSeconds"].as_f64().unwrap_or(0.0),
        }
    }

    fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.cpu += o.cpu;
        self.hashes += o.hashes;
        self.hash_cpu += o.hash_cpu;
    }
}

fn stats_of_histogram(h: &hdrhistogram::Histogram<u64>, count: u64, errors: u64) -> RequestStats {
    RequestStats {
        count,
        errors,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p95_ms: h.value_at_quantile(0.95) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        p95_low_ms: 0.0,
    }
}

pub async fn run(plan: Plan<'_>) -> anyhow::Result<Step> {
    let client = reqwest::Client::new();
    let settle_secs = match plan.settle {
        true => Some(settle(&client, plan.hosts).await?),
        false => None,
    };
    let mut before = Counters::default();
    // Requests the servers were still working on as the step began: they
    // finish inside it, in the servers' count but not the client's.
    let mut in_flight_at_start = 0u64;
    for h in plan.hosts {
        let m = server_metrics(&client, h, 0).await?;
        in_flight_at_start += in_flight(&m);
        before.add(&Counters::of(&m));
    }
    let (goose_users, open) = match plan.load {
        Load::Users(n) => (n, None),
        Load::Rate { per_sec, slots } => (slots, Some(per_sec)),
    };
    let users = goose_users.to_string();
    let secs = plan.secs.to_string();
    let mut args: Vec<String> = vec![
        "--users".into(),
        users.clone(),
        // All users start within about a second; metrics reset after that.
        "--increase-rate".into(),
        users,
        "--run-time".into(),
        secs,
        "--quiet".into(),
        "--no-print-metrics".into(),
        // The error summary stays on: it is what `sample_errors` reports
        // (distinct messages, so it stays small).
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
        .context("goose configuration")?;
    let mut attack = GooseAttack::initialize_with_config(config).context("starting goose")?;
    let scenarios = if plan.explore_only {
        vec![journeys::explore_only(&plan.hosts[0]).context("building the scenario")?]
    } else {
        journeys::scenarios(plan.hosts, plan.journeys.clone(), open.is_some())
            .context("building the scenarios")?
    };
    for s in scenarios {
        attack = attack.register_scenario(s);
    }
    let me = std::process::id();
    let (cpu0, busy0, hosts0, t0) = (
        measure::machine::process_cpu_seconds(me),
        measure::machine::machine_busy_seconds(),
        hosts::snapshot(plan.cpu_hosts),
        Instant::now(),
    );
    journeys::take_shed_micros();
    arrivals::take_latencies();
    match open {
        // Goose launches every slot within its first second, then holds
        // them for --run-time: the schedule covers that time.
        Some(rate) => arrivals::plan(rate, goose_users, plan.secs),
        None => arrivals::closed(),
    }
    // Visits in progress, sampled every 100 ms until the attack ends.
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let done = std::sync::Arc::clone(&done);
        async move {
            let (mut sum, mut n, mut peak) = (0i64, 0i64, 0i64);
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = arrivals::in_progress();
                sum += now;
                n += 1;
                peak = peak.max(now);
            }
            (sum as f64 / n.max(1) as f64, peak)
        }
    });
    let metrics = attack.execute().await;
    done.store(true, Ordering::Relaxed);
    let (mean, peak) = sampler.await.unwrap_or((0.0, 0));
    let metrics = metrics.context("load test failed")?;
    let (late_starts, latest_start_ms) = arrivals::late();
    let visits_in_progress = Concurrency {
        mean,
        peak,
        late_starts,
        latest_start_ms,
    };
    arrivals::closed();
    let own_times = arrivals::take_latencies();
    // The generator's own count covers the whole attack; Goose's drops the
    // second its users launch in (it resets its metrics then, unless the
    // step includes it). The difference is in the servers' count.
    let own_count: u64 = own_times.values().map(|h| h.len()).sum();
    let shed_client = ShedTimes::of(&journeys::take_shed_micros());
    let wall = t0.elapsed().as_secs_f64().max(0.001);
    let host_cpu = hosts::usage_since(plan.cpu_hosts, &hosts0, wall);
    let cores = measure::machine::machine_cores() as f64;
    let own = measure::machine::process_cpu_seconds(me) - cpu0;
    let busy = measure::machine::machine_busy_seconds() - busy0;
    let mut server = Vec::new();
    let mut after = Counters::default();
    let mut lost = false;
    for h in plan.hosts {
        // A server that died during the step (the crash test kills one on
        // purpose) leaves no metrics: the client's side is still a result.
        // The verdict reads the step's last `secs` samples; five spare.
        match server_metrics(&client, h, plan.secs as usize + 5).await {
            Ok(m) => {
                after.add(&Counters::of(&m));
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
    let (mut total, mut failed, mut sign_ins) = (0u64, 0u64, 0u64);
    // Counts and errors are Goose's; times are the generator's own
    // (`arrivals::record`), merged per class and over all requests.
    let empty = || {
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
            .context("a latency histogram")
    };
    let mut overall = empty()?;
    let mut per_class: BTreeMap<Class, (hdrhistogram::Histogram<u64>, u64, u64)> = BTreeMap::new();
    for agg in metrics.requests.values() {
        let name = agg.path.clone();
        let class = Class::of(&name);
        let count = (agg.success_count + agg.fail_count) as u64;
        let errors = agg.fail_count as u64;
        total += count;
        failed += errors;
        if class == Class::SignIn {
            sign_ins += count;
        }
        let c = match per_class.entry(class) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert((empty()?, 0, 0)),
        };
        c.1 += count;
        c.2 += errors;
        let times = own_times.get(&name);
        if let Some(h) = times {
            c.0.add(h).with_context(|| name.clone())?;
            overall.add(h).with_context(|| name.clone())?;
        }
        let entry = requests.entry(name).or_insert(RequestStats::default());
        entry.count += count;
        entry.errors += errors;
        if let Some(h) = times {
            let s = stats_of_histogram(h, 0, 0);
            (entry.p50_ms, entry.p95_ms, entry.p99_ms) = (s.p50_ms, s.p95_ms, s.p99_ms);
        }
    }
    let classes: BTreeMap<String, RequestStats> = per_class
        .iter()
        .map(|(class, (h, count, errors))| {
            let mut stats = stats_of_histogram(h, *count, *errors);
            stats.p95_low_ms = crate::slo::p95_lower_bound(h);
            (class.name().to_owned(), stats)
        })
        .collect();
    let all = stats_of_histogram(&overall, total, failed);
    let (p50, p95, p99) = (all.p50_ms, all.p95_ms, all.p99_ms);
    let mut sample_errors: Vec<String> = metrics
        .errors
        .values()
        .map(|e| format!("{} × {}", e.occurrences, e.error))
        .collect();
    sample_errors.truncate(5);
    let server_work = if lost {
        ServerWork::default()
    } else {
        ServerWork {
            cpu_seconds: after.cpu - before.cpu,
            password_hashes: after.hashes.saturating_sub(before.hashes),
            password_hash_cpu_seconds: after.hash_cpu - before.hash_cpu,
        }
    };
    Ok(Step {
        users: goose_users,
        arrival_rate: open,
        visits_in_progress,
        duration_secs: duration,
        rps: total as f64 / duration,
        error_rate: if total == 0 {
            0.0
        } else {
            failed as f64 / total as f64
        },
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        requests,
        classes,
        sign_in_share: if total == 0 {
            0.0
        } else {
            sign_ins as f64 / total as f64
        },
        server_work,
        server,
        generator_cpu: (own / (wall * cores)).clamp(0.0, 1.0),
        generator_cpu_seconds: own,
        rest_of_machine_cpu: ((busy - own) / (wall * cores)).clamp(0.0, 1.0),
        client_requests: total,
        // The first /api/metrics call of each host is itself counted.
        server_requests: if lost {
            0
        } else {
            after
                .requests
                .saturating_sub(before.requests + plan.hosts.len() as u64)
        },
        sample_errors,
        shed_client,
        host_cpu,
        settle_secs,
        edge: Some(CountsAtEdges {
            in_flight_at_start,
            launch_requests: own_count.saturating_sub(total),
        }),
    })
}

/// The step as JSON for the result file.
pub fn to_json(step: &Step) -> Value {
    json!(step)
}
