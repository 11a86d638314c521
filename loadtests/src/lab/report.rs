//! The lab's report as data (`minigram.lab/1`, `measure::schema::LabReport`):
//! per variant, its breaking point, the key step's figures, the verdict,
//! the topology it ran on.

use measure::schema::{
    Comparison, Figure, LabReport, LabVariant, Named, RepeatFigures, VariantSpread,
};
use measure::spread::{Difference, Spread};
use minigram::figure_keys as keys;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::catalogue::{Dataset, Experiment, Method};
use super::{LabArgs, Model, Outcome, failing_step, fixed_rate, key_step};
use crate::step::Step;
use crate::{hostreport, verdict};

/// The photo queue during a step, if the server has one working: photos
/// waiting (mean, peak) and the longest upload-to-visible time seen.
pub(super) fn photo_queue(s: &Step) -> Option<Value> {
    let server = s.server.first()?;
    let secs = s.duration_secs;
    // A counter: its highest sample is the total at the end of the step.
    let processed = verdict::figure_peak(server, keys::PHOTOS_PROCESSED, secs);
    (processed > 0.0).then(|| {
        json!({
            "meanWaiting": verdict::figure_mean(server, keys::PHOTOS_QUEUED, secs),
            "peakWaiting": verdict::figure_peak(server, keys::PHOTOS_QUEUED, secs),
            "peakLagMs": verdict::figure_peak(server, keys::PHOTOS_LAG_MS, secs),
            "processedTotal": processed,
        })
    })
}

/// The read replicas during a step, if the variant has any: per replica
/// the reads it served per second and its replication lag (mean and peak,
/// in ms and bytes, as the app's poller measured it every 100 ms), and the
/// reads per second sent to the primary instead, by reason.
pub(super) fn replication(s: &Step, replicas: usize) -> Option<Value> {
    let server = s.server.first()?;
    let secs = s.duration_secs;
    let mean = |key: &str| verdict::figure_mean(server, key, secs);
    let peak = |key: &str| verdict::figure_peak(server, key, secs);
    (replicas > 0).then(|| {
        let each: Vec<Value> = (1..=replicas)
            .map(|n| {
                let key = |what: &str| format!("replica{n}.{what}");
                json!({
                    "replica": n,
                    "readsPerSec": mean(&key("reads")),
                    "upShare": mean(&key("up")),
                    "meanLagMs": mean(&key("lagMs")),
                    "peakLagMs": peak(&key("lagMs")),
                    "meanLagBytes": mean(&key("lagBytes")),
                    "peakLagBytes": peak(&key("lagBytes")),
                })
            })
            .collect();
        json!({
            "replicas": each,
            "toPrimaryPerSec": {
                "ownWrite": mean(keys::REPLICA_BEHIND_FLOOR),
                "noneUsable": mean(keys::REPLICA_NONE_USABLE),
                "retried": mean(keys::REPLICA_RETRIED),
            },
        })
    })
}

/// The timelines during a step, if the server has them: fan-out lag
/// (mean and peak of the last photo's), backlog (peak), timeline writes,
/// photos fanned out and timelines built, per second.
pub(super) fn timelines(s: &Step) -> Option<Value> {
    let server = s.server.first()?;
    let secs = s.duration_secs;
    let mean = |key: &str| verdict::figure_mean(server, key, secs);
    let peak = |key: &str| verdict::figure_peak(server, key, secs);
    let announced = mean(keys::FANOUT_PHOTOS) + mean(keys::FANOUT_CELEBRITY_POSTS);
    let built = mean(keys::TIMELINES_BUILT);
    (announced > 0.0 || built > 0.0).then(|| {
        json!({
            "meanLagMs": mean(keys::FANOUT_LAG_MS),
            "peakLagMs": peak(keys::FANOUT_LAG_MS),
            "peakBacklog": peak(keys::FANOUT_BACKLOG),
            "timelineWritesPerSec": mean(keys::FANOUT_WRITES),
            "photosFannedOutPerSec": mean(keys::FANOUT_PHOTOS),
            "celebrityPhotosPerSec": mean(keys::FANOUT_CELEBRITY_POSTS),
            "builtPerSec": built,
            "pastEndPerSec": mean(keys::TIMELINES_PAST_END),
            // ms per second: 1000 is one worker never idle.
            "followersMsPerSec": mean(keys::FANOUT_FOLLOWERS_MS),
            "writeMsPerSec": mean(keys::FANOUT_WRITE_MS),
        })
    })
}

/// Stage 1's writer during a step, if the server has one: writes and
/// commits per second, writes per commit, writes queued (mean, peak).
pub(super) fn sqlite_writer(s: &Step) -> Option<Value> {
    let server = s.server.first()?;
    let secs = s.duration_secs;
    let mean = |key: &str| verdict::figure_mean(server, key, secs);
    let writes = mean(keys::SQLITE_WRITES);
    let commits = mean(keys::SQLITE_COMMITS);
    (writes > 0.0).then(|| {
        json!({
            "writesPerSec": writes,
            "commitsPerSec": commits,
            "writesPerCommit": if commits > 0.0 { writes / commits } else { 0.0 },
            "meanWaiting": mean(keys::SQLITE_WRITERS_WAITING),
            "peakWaiting": verdict::figure_peak(server, keys::SQLITE_WRITERS_WAITING, secs),
            "queueMsPerSec": mean(keys::SQLITE_WRITE_WAIT_MS),
            "readersBusy": verdict::sqlite_readers_held(server, secs),
            "readersReading": mean(keys::SQLITE_READ_MS) / 1000.0,
        })
    })
}

/// The report, typed where every reader looks (measure::schema::LabReport)
/// and with each variant's figures and the experiment's tables in `rest`.
pub(super) fn report(
    args: &LabArgs,
    exp: &Experiment,
    repeats: usize,
    outcomes: &[Outcome],
    started_at: &str,
    took: Duration,
) -> LabReport {
    // Each variant's runs in the order they ran (round 1, 2, …).
    let runs: Vec<Vec<&Outcome>> = (0..exp.variants.len())
        .map(|i| outcomes.iter().filter(|o| o.index == i).collect())
        .collect();
    let figures: Vec<Vec<RepeatFigures>> = runs
        .iter()
        .map(|r| r.iter().map(|o| repeat_figures(exp, o)).collect())
        .collect();
    let variants: Vec<LabVariant> = runs
        .iter()
        .zip(&figures)
        .map(|(runs, figures)| {
            let spread = spread(exp, figures);
            let mut v = variant(exp, runs[spread.representative - 1]);
            v.repeats = figures.clone();
            v.spread = Some(spread);
            v
        })
        .collect();
    let comparisons = comparisons(exp, &figures);
    // The host tables read each variant whole, typed fields included.
    let whole: Vec<Value> = variants.iter().map(|v| json!(v)).collect();
    let rest = json!({
        "mix": exp.mix.name(),
        "dataset": Dataset::of(args, 1.0, exp.mix).json(),
        "load": {
            "model": match args.model { Model::Open => "open", Model::Closed => "closed" },
            "people": args.people,
            "ladder": match (exp.method, args.model) {
                (Method::Breaking, Model::Open) => format!("visits started per second (open model), {} doubling up to {}, then up to {} bisection steps of {} s; every step starts once the servers have nothing in flight", args.arrival_rate, args.max_arrival_rate, args.bisect, args.bisect_secs),
                (Method::Breaking, Model::Closed) => format!("{} users doubling up to {} (closed model), then up to {} bisection steps of {} s; every step starts once the servers have nothing in flight", args.users, args.max_users, args.bisect, args.bisect_secs),
                (Method::Fixed, Model::Open) => format!("one step of {} visits/s per variant (open model; equal load, no breaking-point search)", fixed_rate(args, exp)),
                (Method::Fixed, Model::Closed) => format!("one step of {} users per variant (closed model; equal load, no breaking-point search)", args.fixed_users),
            },
            "stepSecs": args.step_secs,
            "bisectSecs": args.bisect_secs,
            "warmupSecs": args.warmup_secs,
            "thinkMs": args.think_ms,
            "slo": args.slo,
        },
        "uslOverHosts": hostreport::usl_over_hosts(&whole),
        "roundTrips": hostreport::round_trips(&whole),
        "tradeoff": exp.tradeoff,
        "limits": exp.limits,
    });
    LabReport {
        schema: LabReport::SCHEMA.to_owned(),
        experiment: exp.name.to_owned(),
        question: exp.question.to_owned(),
        change: exp.change.to_owned(),
        commit: env!("MINIGRAM_BUILD_COMMIT").to_owned(),
        machine: measure::machine::Machine::current(),
        started_at: started_at.to_owned(),
        command: command_line(),
        minutes: took.as_secs_f64() / 60.0,
        method: exp.method.name().to_owned(),
        repeats,
        comparisons,
        variants,
        rest: object(rest),
    }
}

/// A variant's report entry from one of its runs.
fn variant(exp: &Experiment, o: &Outcome) -> LabVariant {
    let key = key_step(o);
    let failing = failing_step(o);
    let figures = json!({
        "processes": o.variant.processes,
        "mix": o.variant.mix.unwrap_or(exp.mix).name(),
        "dataset": o.dataset.json(),
        "scale": o.variant.scale,
        "breakingPoint": o.breaking_point,
        "usl": match exp.method {
            Method::Breaking => verdict::usl_of(&o.steps),
            Method::Fixed => Value::Null,
        },
        // Fixed load: what was busiest during the one step.
        "busiest": match exp.method {
            Method::Breaking => Value::Null,
            Method::Fixed => key.map(verdict::saturated).into(),
        },
        // Queued photo processing at that step (stage 2, queue mode).
        "photoQueue": key.and_then(photo_queue),
        // Stage 1's writer at that step: writes, commits, groups.
        "sqliteWriter": key.and_then(sqlite_writer),
        // Read replicas at that step: reads served, lag.
        "replication": key.and_then(|s| replication(s, o.variant.replicas)),
        // Timelines at that step: fan-out lag, backlog, writes.
        "timelines": key.and_then(timelines),
        // Simulated hosts: their budgets, and what each used at
        // that step and where the SLO broke.
        "topology": o.topology,
        "hostCpuAtBreakingPoint": key.filter(|s| !s.host_cpu.is_empty()).map(|s| &s.host_cpu),
        "hostCpuWhereBroken": failing.filter(|s| !s.host_cpu.is_empty()).map(|s| &s.host_cpu),
        "rpsWhereBroken": failing.map(|s| s.rps),
        "atBreakingPoint": key.map(|s| json!({
            "users": s.users,
            "arrivalRate": s.arrival_rate,
            "visitsInProgress": s.visits_in_progress,
            "signInShare": s.sign_in_share,
            "signInsPerSec": s.classes.get("sign-in").map_or(0.0, |c| c.count as f64 / s.duration_secs),
            "serverWork": s.server_work,
            "classes": s.classes,
            "rps": s.rps,
            "errorRate": s.error_rate,
            "p50Ms": s.p50_ms,
            "p95Ms": s.p95_ms,
            "p99Ms": s.p99_ms,
            "requests": s.requests,
        })),
    });
    LabVariant {
        label: o.variant.label.to_owned(),
        stage: o.variant.stage.bin().to_owned(),
        flags: o.variant.flags.iter().map(|f| (*f).to_owned()).collect(),
        result_file: o.file.file_name().map(|f| f.to_string_lossy().into_owned()),
        repeats: Vec::new(),
        spread: None,
        rest: object(figures),
    }
}

/// The figures a repeat's spread and comparisons are made of.
fn repeat_figures(exp: &Experiment, o: &Outcome) -> RepeatFigures {
    let key = key_step(o);
    let bp = o.breaking_point.as_ref();
    let saturated = match exp.method {
        Method::Breaking => bp
            .and_then(|b| b["saturated"].as_str())
            .unwrap_or("")
            .to_owned(),
        Method::Fixed => key.map(verdict::saturated).unwrap_or_default(),
    };
    RepeatFigures {
        repeat: o.repeat,
        result_file: o
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        breaking_point: bp.and_then(|b| b["arrivalRate"].as_f64().or(b["users"].as_f64())),
        rps: key.map_or(0.0, |s| s.rps),
        p95_ms: key.map_or(0.0, |s| s.p95_ms),
        class_p95_ms: key
            .map(|s| {
                s.classes
                    .iter()
                    .map(|(c, r)| (c.clone(), r.p95_ms))
                    .collect()
            })
            .unwrap_or_default(),
        saturated_first: measure::spread::saturated_first(&saturated),
        saturated,
    }
}

/// A variant's figures over its repeats, and which repeat stands for it:
/// the median breaking point (a repeat whose SLO held counts as the
/// highest), or the median p95 at a fixed load; the lower of two middles.
fn spread(exp: &Experiment, figures: &[RepeatFigures]) -> VariantSpread {
    let mut order: Vec<&RepeatFigures> = figures.iter().collect();
    match exp.method {
        Method::Breaking => order.sort_by(|a, b| {
            let level = |r: &RepeatFigures| r.breaking_point.unwrap_or(f64::INFINITY);
            level(a).total_cmp(&level(b))
        }),
        Method::Fixed => order.sort_by(|a, b| a.p95_ms.total_cmp(&b.p95_ms)),
    }
    let representative = order[(order.len() - 1) / 2].repeat;
    let breaking: Vec<f64> = figures.iter().filter_map(|r| r.breaking_point).collect();
    let mut classes: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in figures {
        for (c, p95) in &r.class_p95_ms {
            classes.entry(c.clone()).or_default().push(*p95);
        }
    }
    let mut named: Vec<Named> = Vec::new();
    for r in figures.iter().filter(|r| !r.saturated_first.is_empty()) {
        match named.iter_mut().find(|n| n.what == r.saturated_first) {
            Some(n) => n.repeats += 1,
            None => named.push(Named {
                what: r.saturated_first.clone(),
                repeats: 1,
            }),
        }
    }
    // Most named first; a tie keeps the order they first came up in.
    named.sort_by_key(|n| std::cmp::Reverse(n.repeats));
    VariantSpread {
        repeats: figures.len(),
        representative,
        breaking_point: match exp.method {
            Method::Breaking => Spread::of(&breaking),
            Method::Fixed => None,
        },
        held: match exp.method {
            Method::Breaking => figures.len() - breaking.len(),
            Method::Fixed => 0,
        },
        rps: Spread::of(&figures.iter().map(|r| r.rps).collect::<Vec<_>>()),
        p95_ms: Spread::of(&figures.iter().map(|r| r.p95_ms).collect::<Vec<_>>()),
        class_p95_ms: classes
            .into_iter()
            .filter_map(|(c, v)| Some((c, Spread::of(&v)?)))
            .collect(),
        saturated: named,
    }
}

/// The experiment's comparisons, B ÷ A, each figure over paired repeats:
/// the breaking point and req/s at it (breaking-point search), or the p95
/// at the one load (fixed load).
fn comparisons(exp: &Experiment, figures: &[Vec<RepeatFigures>]) -> Vec<Comparison> {
    let compared: &[Figure] = match exp.method {
        Method::Breaking => &[Figure::BreakingPoint, Figure::Rps],
        Method::Fixed => &[Figure::P95Ms],
    };
    let mut out = Vec::new();
    for (a, b) in exp.pairs() {
        for &figure in compared {
            let values = |i: usize| -> Vec<Option<f64>> {
                figures[i].iter().map(|r| figure.of(r)).collect()
            };
            if let Some(difference) = Difference::of(&values(a), &values(b)) {
                out.push(Comparison {
                    baseline: exp.variants[a].label.to_owned(),
                    variant: exp.variants[b].label.to_owned(),
                    figure,
                    difference,
                });
            }
        }
    }
    out
}

/// The fields of a `json!({...})` object.
fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The command as a user would type it (`loadtests lab …`, not the
/// binary's full path).
pub(super) fn command_line() -> String {
    let mut args = std::env::args();
    let bin = args
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "loadtests".into());
    std::iter::once(bin)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
