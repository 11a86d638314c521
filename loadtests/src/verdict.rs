//! Judging steps: the breaking-point search (a doubling ladder of load,
//! users or visits per second, then bisection) against the SLO
//! (`slo.rs`), what saturated, and the spike and soak summaries.
//!
//! **What saturated** is read, not guessed: from the server's own
//! `/api/metrics` over the failing step (hash queue, SQLite writer queue,
//! pool waiters, shedding) and from the machine's CPU split between the
//! load generator and everything else. Everything over its threshold is
//! named, strongest evidence first: more password hashes in flight than
//! cores, any SQLite write queue (or ≥ 0.5 s of lock wait per second), any
//! pool waiters, any shedding, and the machine ≥ 80% busy. If the generator itself used most of
//! a core's worth of the machine, the verdict blames the generator, not the
//! server. On simulated hosts (a topology run) the machine's CPU is not
//! the measure: every host that used ≥ 90% of its own CPU budget (its
//! cgroup's accounting), or hit its quota in at least half of the CPU
//! periods, is named first, and a full generator host means the run
//! measured the generator.

use minigram::figure_keys as keys;
use serde_json::{Value, json};

use crate::hosts::HostUse;
use crate::journeys::name;
use crate::slo::Slo;
use crate::step::{self, Load, Plan, Step};

/// Every journey request seen and none failed.
pub fn smoke_ok(s: &Step) -> Result<(), String> {
    let missing: Vec<&str> = name::ALL
        .iter()
        .filter(|n| s.requests.get(**n).is_none_or(|r| r.count == 0))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(format!("request names never exercised: {missing:?}"));
    }
    let failed: u64 = s.requests.values().map(|r| r.errors).sum();
    if failed > 0 {
        return Err(format!("{failed} requests failed: {:?}", s.sample_errors));
    }
    Ok(())
}

/// The step's last `secs` one-second server samples, picked by `pick`.
fn samples(server: &Value, secs: f64, pick: impl Fn(&Value) -> Option<f64>) -> Vec<f64> {
    let history = server["history"].as_array().cloned().unwrap_or_default();
    let take = (secs.ceil() as usize).max(1);
    history.iter().rev().take(take).filter_map(pick).collect()
}

/// The step's one-second server samples of a stage figure.
fn figure_samples(server: &Value, key: &str, secs: f64) -> Vec<f64> {
    samples(server, secs, |s| s["figures"][key].as_f64())
}

/// The step's one-second server samples of a top-level number (shed, rssMib...).
fn figure_samples_top(server: &Value, key: &str, secs: f64) -> Vec<f64> {
    samples(server, secs, |s| s[key].as_f64())
}

/// The mean over the step's one-second server samples of a figure.
pub fn figure_mean(server: &Value, key: &str, secs: f64) -> f64 {
    let v = figure_samples(server, key, secs);
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The highest one-second sample of a figure in the step.
pub fn figure_peak(server: &Value, key: &str, secs: f64) -> f64 {
    figure_samples(server, key, secs)
        .into_iter()
        .fold(0.0, f64::max)
}

/// Mean SQLite read slots held over a step: from the time-integral
/// counter where the server has it (so it is never below the connections
/// running SQL, averaged the same way), else from the once-a-second gauge.
pub fn sqlite_readers_held(server: &Value, secs: f64) -> f64 {
    if figure_peak(server, keys::SQLITE_READ_HELD_MS, secs) > 0.0 {
        figure_mean(server, keys::SQLITE_READ_HELD_MS, secs) / 1000.0
    } else {
        figure_mean(server, keys::SQLITE_READERS_BUSY, secs)
    }
}

/// Names what saturated during a step, from measurements. The queues —
/// SQLite's writer and readers, the Postgres and Redis pools, the photo
/// queue, password hashing — are ranked by how far each is over its
/// capacity (mean waiting per server: per writer, per connection, per
/// core), strongest first; then shedding, the generator's late starts and
/// the machine's CPU, which are consequences or context.
pub fn saturated(s: &Step) -> String {
    let cores = measure::machine::machine_cores() as f64;
    // On simulated hosts each budget is judged by itself: a host that used
    // nearly all of it is saturated, whatever the machine as a whole did.
    let full_hosts: Vec<&HostUse> = {
        let mut v: Vec<&HostUse> = s
            .host_cpu
            .iter()
            .filter(|h| {
                h.budget_share.is_some_and(|b| b >= HOST_FULL)
                    || (h.cpus.is_some() && h.throttled_share >= HOST_THROTTLED)
            })
            .collect();
        let strength = |h: &HostUse| h.budget_share.unwrap_or(0.0).max(h.throttled_share);
        v.sort_by(|a, b| strength(b).total_cmp(&strength(a)));
        v
    };
    if let Some(g) = full_hosts.iter().find(|h| h.name == "generator") {
        return format!(
            "the load generator's host ({}): the server was not the limit",
            host_use(g)
        );
    }
    if s.host_cpu.is_empty() && s.generator_cpu * cores >= 0.9 {
        return format!(
            "the load generator ({:.0}% of the machine's CPU, {:.2} cores): the server was not the limit",
            s.generator_cpu * 100.0,
            s.generator_cpu * cores
        );
    }
    // (how far over capacity, what it says)
    let mut queues: Vec<(f64, String)> = Vec::new();
    let mut evidence = Vec::new();
    for server in &s.server {
        let secs = s.duration_secs;
        let mean = |key: &str| figure_mean(server, key, secs);
        let peak = |key: &str| figure_peak(server, key, secs);
        let writers = mean(keys::SQLITE_WRITERS_WAITING);
        let wait = mean(keys::SQLITE_WRITE_WAIT_MS);
        if writers >= 1.0 || wait >= 500.0 {
            queues.push((
                writers.max(wait / 1000.0),
                format!(
                    "the SQLite writer (mean {writers:.1}, peak {:.0} writes queued for the one writer; {wait:.0} ms of queueing per second; {:.0} writes/s in {:.0} commits/s, {:.1} per commit)",
                    peak(keys::SQLITE_WRITERS_WAITING),
                    mean(keys::SQLITE_WRITES),
                    mean(keys::SQLITE_COMMITS),
                    mean(keys::SQLITE_WRITES) / mean(keys::SQLITE_COMMITS).max(1e-9)
                ),
            ));
        }
        let readers = sqlite_readers_held(server, secs);
        let readers_peak = peak(keys::SQLITE_READERS_BUSY);
        // A read holds its connection's slot from before its blocking
        // thread runs: on a machine short of CPU most of that is waiting
        // for a core, not reading. Only connections running SQL
        // (`sqlite.readMs`) say the readers are the limit; a server
        // without that figure is judged by slots held, as before.
        let reading = if figure_peak(server, keys::SQLITE_READ_MS, secs) > 0.0 {
            mean(keys::SQLITE_READ_MS) / 1000.0
        } else {
            readers
        };
        if readers_peak >= 8.0 && reading >= 4.0 {
            queues.push((
                reading / 8.0,
                format!(
                    "SQLite read connections (mean {readers:.1}, peak {readers_peak:.0} held; {reading:.1} running SQL)"
                ),
            ));
        }
        let pg = mean(keys::POSTGRES_WAITING);
        let pg_peak = peak(keys::POSTGRES_WAITING);
        if pg >= 1.0 || pg_peak >= 4.0 {
            let size = (mean(keys::POSTGRES_USED) + mean(keys::POSTGRES_IDLE)).max(1.0);
            // Calls refused because its queue was full waited for nothing:
            // they are what the queue would have grown by.
            let refused = mean(keys::POSTGRES_SHED);
            let refused = if refused >= 0.5 {
                format!("; {refused:.0} calls/s refused at once, its queue full")
            } else {
                String::new()
            };
            queues.push((
                pg / size,
                format!(
                    "the Postgres pool (mean {pg:.1}, peak {pg_peak:.0} requests waiting for a connection; {:.1} of its connections in use{refused})",
                    mean(keys::POSTGRES_USED)
                ),
            ));
        }
        let redis = mean(keys::REDIS_WAITING);
        if redis >= 1.0 {
            // Under load nearly every connection is in use: that is its size.
            let size = mean(keys::REDIS_USED).max(1.0);
            let refused = mean(keys::REDIS_SHED);
            let refused = if refused >= 0.5 {
                format!("; {refused:.0} calls/s refused at once, its queue full")
            } else {
                String::new()
            };
            queues.push((
                redis / size,
                format!("the Redis pool ({redis:.1} requests waiting{refused})"),
            ));
        }
        // Queued photo processing: a backlog means photos become visible
        // late (the requests themselves may still be fast).
        let queued = mean(keys::PHOTOS_QUEUED);
        let lag = peak(keys::PHOTOS_LAG_MS);
        if queued >= 5.0 || lag >= 5_000.0 {
            queues.push((
                queued.max(lag / 1000.0),
                format!(
                    "the photo queue (mean {queued:.0}, peak {:.0} photos waiting; up to {:.1} s from upload to visible)",
                    peak(keys::PHOTOS_QUEUED),
                    lag / 1000.0
                ),
            ));
        }
        // Fan-out on write: a backlog means followers see photos late;
        // the workers' time says whether they are the limit (1000 ms a
        // second per worker: never idle) and on what they spend it.
        let backlog = mean(keys::FANOUT_BACKLOG);
        let fan_lag = peak(keys::FANOUT_LAG_MS);
        if backlog >= 5.0 || fan_lag >= 2_000.0 {
            let (looking, writing) = (mean(keys::FANOUT_FOLLOWERS_MS), mean(keys::FANOUT_WRITE_MS));
            queues.push((
                backlog.max(fan_lag / 1000.0),
                format!(
                    "the fan-out workers (mean {backlog:.0}, peak {:.0} photos waiting; up to {:.1} s from post to every follower's timeline; {:.0} ms a second fanning out: {looking:.0} looking up followers, {writing:.0} writing {:.0} timelines/s)",
                    peak(keys::FANOUT_BACKLOG),
                    fan_lag / 1000.0,
                    looking + writing,
                    mean(keys::FANOUT_WRITES),
                ),
            ));
        }
        let hash = mean(keys::HASH_IN_FLIGHT);
        let hash_peak = peak(keys::HASH_IN_FLIGHT);
        // More hashes in flight than cores: sign-ins queue for the CPU. The
        // peak matters too: logins arrive in bursts that a mean hides.
        if hash > cores || (hash_peak >= 2.0 * cores && hash >= 0.5 * cores) {
            queues.push((
                hash / cores,
                format!(
                    "password hashing (mean {hash:.1}, peak {hash_peak:.0} hashes running or queued on {cores} cores)"
                ),
            ));
        }
        let shed = server["shed"].as_u64().unwrap_or(0);
        if shed > 0 {
            evidence.push(format!(
                "overload shedding ({shed} requests answered 503/429 in the last 10 s)"
            ));
        }
    }
    queues.sort_by(|a, b| b.0.total_cmp(&a.0));
    // A full host comes first: the queues in front of it are what it
    // being full looks like from the app.
    let mut evidence: Vec<String> = full_hosts
        .iter()
        .map(|h| format!("the {} host ({})", h.name, host_use(h)))
        .chain(queues.into_iter().map(|(_, e)| e))
        .chain(evidence)
        .collect();
    let c = &s.visits_in_progress;
    if c.late_starts > 0 {
        evidence.push(format!(
            "the generator's visit slots ({} visits started late, up to {:.0} ms, all {} slots busy)",
            c.late_starts, c.latest_start_ms, s.users
        ));
    }
    let rest = s.rest_of_machine_cpu * cores;
    if s.host_cpu.is_empty() && s.rest_of_machine_cpu + s.generator_cpu >= 0.8 {
        evidence.push(format!(
            "CPU: the machine was {:.0}% busy (server side {rest:.2} cores, generator {:.2} cores)",
            (s.rest_of_machine_cpu + s.generator_cpu) * 100.0,
            s.generator_cpu * cores
        ));
    }
    if evidence.is_empty() && !s.host_cpu.is_empty() {
        format!(
            "no host used its whole budget and no queue formed ({}); see the per-request latencies",
            s.host_cpu
                .iter()
                .map(|h| format!("{} {:.0}%", h.name, h.budget_share.unwrap_or(0.0) * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if evidence.is_empty() {
        format!(
            "nothing the server measures was saturated (machine CPU {:.0}%); see the per-request latencies",
            (s.rest_of_machine_cpu + s.generator_cpu) * 100.0
        )
    } else {
        evidence.join("; ")
    }
}

/// A host that used this share of its CPU budget over a step is full.
const HOST_FULL: f64 = 0.9;

/// A host that hit its quota in this share of CPU periods is short of CPU
/// even if its mean use is lower: its processes run in parallel on the
/// machine's cores, spend the quota early in a period and wait out the
/// rest (as a container with a `cpus:` limit does).
const HOST_THROTTLED: f64 = 0.5;

/// "97% of its 0.20-core budget, throttled in 85% of CPU periods".
fn host_use(h: &HostUse) -> String {
    format!(
        "{:.0}% of its {:.2}-core budget, {:.3} cores; throttled in {:.0}% of CPU periods",
        h.budget_share.unwrap_or(0.0) * 100.0,
        h.cpus.unwrap_or(0.0),
        h.cores,
        h.throttled_share * 100.0
    )
}

pub type PlanFn<'a> = dyn Fn(Load, u64, bool) -> Plan<'a> + 'a;

pub async fn measure<'a>(
    plan: &PlanFn<'a>,
    load: Load,
    secs: u64,
    label: &str,
) -> anyhow::Result<Step> {
    measure_after(plan, load, secs, label, true).await
}

/// `measure`, with `settle` off for a step that must start on whatever
/// the last one left in flight (a spike's recovery).
async fn measure_after<'a>(
    plan: &PlanFn<'a>,
    load: Load,
    secs: u64,
    label: &str,
    settle: bool,
) -> anyhow::Result<Step> {
    eprintln!("{label}: {} for {secs} s", load.describe());
    let s = step::run(Plan {
        settle,
        ..plan(load, secs, true)
    })
    .await?;
    eprintln!(
        "  {:.1} req/s, errors {:.2}%, p95 {:.0} ms, {:.1} visits in progress (peak {}), sign-ins {:.2}% of requests, generator CPU {:.0}%",
        s.rps,
        s.error_rate * 100.0,
        s.p95_ms,
        s.visits_in_progress.mean,
        s.visits_in_progress.peak,
        s.sign_in_share * 100.0,
        s.generator_cpu * 100.0
    );
    Ok(s)
}

/// How long the steps of a breaking-point search run.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    /// Seconds of each ladder step.
    pub ladder_secs: u64,
    /// Seconds of each bisection step: these decide the breaking point
    /// between two close levels, where a short window's p95 is noisiest,
    /// so the lab gives them longer.
    pub bisect_secs: u64,
    /// How many bisection steps at most.
    pub bisect: usize,
}

/// The step ladder (doubling the load level: users, or visits per second)
/// then bisection. `load` turns a level into a step's load. Returns all
/// steps and the verdict (`None` if the SLO held up to `max`).
pub async fn breaking<'a>(
    plan: &PlanFn<'a>,
    load: &dyn Fn(f64) -> Load,
    start: f64,
    max: f64,
    steps_of: Steps,
    slo: &Slo,
) -> anyhow::Result<(Vec<Step>, Option<Value>)> {
    let Steps {
        ladder_secs: secs,
        bisect_secs,
        bisect,
    } = steps_of;
    let mut steps: Vec<Step> = Vec::new();
    let (mut pass, mut fail): (Option<usize>, Option<usize>) = (None, None);
    let mut level = start.clamp(1.0, max);
    loop {
        let s = measure(plan, load(level), secs, "ladder").await?;
        let ok = slo.check(&s);
        steps.push(s);
        match ok {
            Ok(()) => {
                eprintln!("  SLO held");
                pass = Some(steps.len() - 1);
                if level >= max {
                    break;
                }
                level = (level * 2.0).min(max);
            }
            Err(why) => {
                eprintln!("  SLO broken: {why}");
                fail = Some(steps.len() - 1);
                break;
            }
        }
    }
    let Some(mut f) = fail else {
        return Ok((steps, None));
    };
    for _ in 0..bisect {
        let lo = pass.map_or(0.0, |p| steps[p].level());
        let hi = steps[f].level();
        // Close enough: within 1/20 of the level (and a whole visit/s).
        if hi - lo <= (lo / 20.0).max(1.0) {
            break;
        }
        let mid = ((lo + hi) / 2.0).ceil();
        let s = measure(plan, load(mid), bisect_secs, "bisect").await?;
        let ok = slo.check(&s);
        steps.push(s);
        // Each bisection step says its verdict, as the ladder's do.
        match ok {
            Ok(()) => {
                eprintln!("  SLO held");
                pass = Some(steps.len() - 1);
            }
            Err(why) => {
                eprintln!("  SLO broken: {why}");
                f = steps.len() - 1;
            }
        }
    }
    let failing = &steps[f];
    let breach = slo.check(failing).err();
    let passing = pass.map(|p| &steps[p]);
    let verdict = json!({
        "model": if failing.arrival_rate.is_some() { "open" } else { "closed" },
        "users": passing.map_or(0, |p| p.users),
        "arrivalRate": passing.and_then(|p| p.arrival_rate),
        "rps": passing.map_or(0.0, |p| p.rps),
        "brokenBy": breach.as_ref().map(|b| b.to_string()).unwrap_or_default(),
        "brokenClass": breach.as_ref().and_then(|b| b.class.map(|c| c.name())),
        "brokenRequest": breach.as_ref().and_then(|b| b.request.clone()),
        "saturated": saturated(failing),
        "failingUsers": failing.users,
        "failingArrivalRate": failing.arrival_rate,
        "failingRps": failing.rps,
        "generatorCpuAtFailure": failing.generator_cpu,
        "usl": usl_of(&steps),
    });
    Ok((steps, Some(verdict)))
}

/// Baseline, spike, then recovery in 5 s steps until p95 and errors are
/// back near the baseline.
pub async fn spike<'a>(
    plan: &PlanFn<'a>,
    base_load: Load,
    spike_load: Load,
    secs: u64,
    slo: &Slo,
) -> anyhow::Result<(Vec<Step>, Value)> {
    let base = measure(plan, base_load, secs, "baseline").await?;
    let spiked = measure(plan, spike_load, secs, "spike").await?;
    let target = (base.p95_ms * 1.5).max(base.p95_ms + 20.0);
    let mut steps = vec![base, spiked];
    let mut recovered_after = None;
    for i in 1..=6u64 {
        let s = measure_after(plan, base_load, 5, "recovery", false).await?;
        let ok = s.p95_ms <= target && s.error_rate <= slo.error_rate;
        steps.push(s);
        if ok {
            recovered_after = Some(i * 5);
            break;
        }
    }
    // From the servers' one-second samples over the spike (the snapshot's
    // own numbers cover only its last 10 s).
    let spiked = &steps[1];
    // The spike's seconds, and its ramp-up second before them.
    let window = secs as f64 + 1.0;
    let per_server = |key: &str| -> Vec<Vec<f64>> {
        spiked
            .server
            .iter()
            .map(|m| figure_samples_top(m, key, window))
            .collect()
    };
    let shed: f64 = per_server("shed").iter().flatten().sum();
    let shed_max_ms = per_server("shedMaxMs")
        .iter()
        .flatten()
        .fold(0.0f64, |a, b| a.max(*b));
    let peak_rss_mib: f64 = per_server("rssMib")
        .iter()
        .map(|s| s.iter().fold(0.0f64, |a, b| a.max(*b)))
        .sum();
    let server_up = spiked.server.iter().all(|m| !m.is_null());
    Ok((
        steps.clone(),
        json!({
            "baselineP95Ms": steps[0].p95_ms,
            "spikeUsers": steps[1].users,
            "spikeArrivalRate": steps[1].arrival_rate,
            "spikeErrorRate": spiked.error_rate,
            "spikeP95Ms": spiked.p95_ms,
            "shedInSpike": shed as u64,
            "slowestShedMs": shed_max_ms,
            "shedAsClientsSawIt": spiked.shed_client,
            "peakRssMib": peak_rss_mib,
            "serverUpAfterSpike": server_up,
            "recoveredWithinSecs": recovered_after,
            "recoveryTargetP95Ms": target,
        }),
    ))
}

/// The Universal Scalability Law fitted to every step's throughput against
/// its concurrency: the users (closed model), or the mean visits in
/// progress (open model, where concurrency is an outcome).
pub fn usl_of(steps: &[Step]) -> Value {
    let points: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| match s.arrival_rate {
            Some(_) => (s.visits_in_progress.mean.max(1.0), s.rps),
            None => (s.users as f64, s.rps),
        })
        .collect();
    match measure::usl::fit(&points) {
        Some(f) => serde_json::to_value(f).unwrap_or(Value::Null),
        None => Value::Null,
    }
}

/// Latency drift and memory growth between the first and the last step.
pub fn soak_summary(steps: &[Step]) -> Value {
    let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
        return json!({});
    };
    let rss = |s: &Step| {
        s.server
            .iter()
            .filter_map(|m| m["processRssBytes"].as_u64())
            .sum::<u64>()
    };
    json!({
        "p95FirstMs": first.p95_ms,
        "p95LastMs": last.p95_ms,
        "p95DriftPercent": if first.p95_ms > 0.0 { (last.p95_ms / first.p95_ms - 1.0) * 100.0 } else { 0.0 },
        "rssFirstBytes": rss(first),
        "rssLastBytes": rss(last),
        "rssGrowthBytes": rss(last) as i64 - rss(first) as i64,
    })
}
