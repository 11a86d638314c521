//! `loadtests lab <experiment>`: one command, one measured answer to a
//! scaling question.
//!
//! Every experiment follows the lab's method: a baseline, the same load,
//! **one** change, the same load again, a comparison. The lab starts
//! everything itself — fresh storage (a temporary SQLite directory, or a
//! new Postgres database and Redis key prefix), the seeded dataset, the
//! stage processes with the variant's flags — runs the breaking-point
//! search against each variant, stops what it started, and writes:
//!
//! - one `minigram.loadtest/1` file per variant (`results/lab-<exp>-<variant>-<time>.json`,
//!   which the dashboard pairs into before/after tables),
//! - the report, `results/lab-<exp>-<time>.json` (`minigram.lab/1`) and
//!   `.md`, and the same Markdown as `docs/experiments/<exp>.md`.
//!
//! Files are written whole or not at all: an interrupted run (Ctrl-C, a
//! failure) stops every process it started and leaves no report.
//!
//! The rooms: the experiment catalogue (`catalogue.rs`), what a run starts
//! and removes (`setup.rs`), this file's orchestration of the variants,
//! and the report as data (`report.rs`) and as a chapter (`chapter.rs`).

mod catalogue;
mod chapter;
mod report;
mod run;
mod setup;

use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::step::Step;
use crate::topology::Topology;
pub use catalogue::names;
use catalogue::{Dataset, Experiment, Stage, Variant, experiments};
use run::Run;
use setup::{binary, check_reachable, sqlite_commit_rate};

#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    /// The experiment to run (`loadtests lab list` names them all).
    pub experiment: String,
    /// Seeded dataset: users (user1..userN, the seed password).
    #[arg(long, default_value_t = 10_000)]
    pub dataset_users: usize,
    #[arg(long, default_value_t = 100_000)]
    pub dataset_photos: usize,
    #[arg(long, default_value_t = 50)]
    pub dataset_follows_per_user: usize,
    #[arg(long, default_value_t = 200_000)]
    pub dataset_likes: usize,
    /// The load model: `open` (visits started per second, the default) or
    /// `closed` (users in a loop).
    #[arg(long, value_enum, default_value = "open")]
    pub model: Model,
    /// Open model: first step of the visits/s ladder (it doubles up to
    /// --max-arrival-rate).
    #[arg(long, default_value_t = 16.0, allow_negative_numbers = true)]
    pub arrival_rate: f64,
    #[arg(long, default_value_t = 1024.0)]
    pub max_arrival_rate: f64,
    /// Open model: the most visits in progress at once (the generator's slots).
    #[arg(long, default_value_t = 2000)]
    pub max_visits: usize,
    /// Closed model: first step of the users ladder (it doubles up to --max-users).
    #[arg(long, default_value_t = 8)]
    pub users: usize,
    #[arg(long, default_value_t = 512)]
    pub max_users: usize,
    /// People with lasting sessions, signed in before each variant's load.
    #[arg(long, default_value_t = 500)]
    pub people: usize,
    /// Seconds of each step.
    #[arg(long, default_value_t = 20)]
    pub step_secs: u64,
    /// Seconds of unmeasured load at the first level before each variant's
    /// first step (0: none). Without it the first step runs on cold
    /// buffers and fresh connection pools: on small hosts that alone broke
    /// the SLO at the ladder's first rung in every variant alike.
    #[arg(long, default_value_t = 20)]
    pub warmup_secs: u64,
    /// Runs of every variant, interleaved (A B C, A B C …), each on fresh
    /// storage and servers; the report gives each figure's median and
    /// range. Default: the experiment's own (3; repeatability 5).
    #[arg(long, allow_negative_numbers = true)]
    pub repeat: Option<i64>,
    /// Go on with an interrupted run: the time stamp of its files
    /// (`lab-<exp>-<variant>-<STAMP>-r<k>.json`). Runs whose file exists
    /// (from this same build) are read back instead of run again.
    #[arg(long, value_name = "STAMP")]
    pub resume: Option<String>,
    /// Bisection steps after the ladder. Four take the last passing and
    /// first failing level to within about 1/20 of each other (where the
    /// search stops, `verdict::breaking`) from any ladder rung; three left 64–72 or 72–80 visits/s apart, an 11 %
    /// step whose rounding alone has a CV of about 3 % (the repeatability
    /// run measured 10 % for stage 1 with three).
    #[arg(long, default_value_t = 4)]
    pub bisect: usize,
    /// Seconds of each bisection step. Longer than the ladder's: they
    /// decide between two close levels, where p95 over 20 s varied most
    /// (stage 1 at 64 visits/s: 97 to 360 ms over eight runs of
    /// results/lab-repeatability-* and lab-stage1-vs-stage2-*).
    #[arg(long, default_value_t = 30)]
    pub bisect_secs: u64,
    #[arg(long, default_value = crate::slo::DEFAULT)]
    pub slo: String,
    #[arg(long, default_value = "200-800")]
    pub think_ms: String,
    /// The one fixed-load step of experiments that compare at equal load
    /// instead of searching the breaking point (index-impact,
    /// network-latency): visits/s (open model; default 50, or the
    /// experiment's own: network-latency 20) ...
    #[arg(long)]
    pub fixed_rate: Option<f64>,
    /// ... or users (closed model).
    #[arg(long, default_value_t = 32)]
    pub fixed_users: usize,
    /// Where result files and the report go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../results"))]
    pub out_dir: PathBuf,
    /// Where the report's Markdown is also written as a tutorial chapter.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/experiments"))]
    pub docs_dir: PathBuf,
    /// Postgres server for stage-2 variants (a new database per variant).
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub postgres: String,
    #[arg(long, env = "TEST_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Simulated hosts (`topology.rs`): a CPU budget per host and the
    /// app–data round trip, e.g.
    /// `app=0.2,postgres=0.45,redis=0.15,generator=0.45,rtt=0.5`; `none`
    /// runs on the shared box. Default: the experiment's own (scale-out,
    /// stage1-vs-stage2 and network-latency have one; the others run on the
    /// shared box). Needs root and cgroups.
    #[arg(long)]
    pub topology: Option<String>,
}

/// The load model of a lab run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    Open,
    Closed,
}

/// What one run of a variant measured.
struct Outcome {
    variant: Variant,
    /// The variant's place in the experiment (0: the baseline).
    index: usize,
    /// The round of the interleaved order it ran in (1-based).
    repeat: usize,
    dataset: Dataset,
    file: PathBuf,
    steps: Vec<Step>,
    breaking_point: Option<Value>,
    /// The hosts it ran on (`None`: the shared box).
    topology: Option<Value>,
}

pub async fn run(args: LabArgs) -> anyhow::Result<std::process::ExitCode> {
    if args.experiment == "list" {
        for e in experiments() {
            println!("{:<18} {}", e.name, e.question);
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let Some(exp) = experiments()
        .into_iter()
        .find(|e| e.name == args.experiment)
    else {
        bail!(
            "unknown experiment {:?}: choose one of {}",
            args.experiment,
            names().join(", ")
        );
    };
    anyhow::ensure!(
        args.users > 0 && args.max_users >= args.users,
        "--users must be at least 1 and at most --max-users"
    );
    anyhow::ensure!(
        args.arrival_rate > 0.0 && args.max_arrival_rate >= args.arrival_rate,
        "--arrival-rate must be above 0 and at most --max-arrival-rate"
    );
    anyhow::ensure!(
        args.fixed_rate.is_none_or(|r| r > 0.0),
        "--fixed-rate must be above 0"
    );
    anyhow::ensure!(args.step_secs > 0, "--step-secs must be at least 1");
    anyhow::ensure!(args.bisect_secs > 0, "--bisect-secs must be at least 1");
    anyhow::ensure!(
        args.repeat.is_none_or(|r| r >= 1),
        "--repeat must be at least 1 (runs of each variant)"
    );
    if let Some(stamp) = &args.resume {
        started_at_of(stamp)?;
    }
    args.slo.parse::<crate::slo::Slo>()?;
    crate::think(&args.think_ms)?;
    let topology: Option<Topology> = match args.topology.as_deref() {
        Some("none" | "shared") => None,
        Some(t) => Some(t.parse().map_err(|e| anyhow::anyhow!("--topology: {e}"))?),
        None => exp
            .topology
            .map(|t| t.parse().expect("the catalogue's topologies parse")),
    };
    // Refused before anything starts: a machine without cgroups, or
    // budgets that add up to more than its cores.
    if let Some(t) = &topology {
        crate::hosts::check()?;
        for v in &exp.variants {
            t.fits(v.shape(), v.label)?;
        }
    } else if let Some(v) = exp.variants.iter().find(|v| v.replicas > 0) {
        bail!(
            "variant {} has read replicas, which the lab starts only on simulated hosts: pass a --topology with a replica size (e.g. replica=0.2), not none",
            v.label
        );
    } else if exp.variants.iter().any(|v| v.stage == Stage::Two) {
        check_reachable("Postgres", &args.postgres, 5432)?;
        check_reachable("Redis", &args.redis, 6379)?;
    }
    for v in &exp.variants {
        binary(v.stage.bin())?;
    }
    // Ctrl-C or SIGTERM (`kill`, a CI timeout) drops the running
    // experiment: its servers, storage and hosts are stopped and removed
    // by their guards, and no report is written.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = run_experiment(&args, &exp, topology.as_ref()) => r,
        _ = tokio::signal::ctrl_c() => {
            bail!("interrupted: stopped every process the lab started; no report was written")
        }
        _ = term.recv() => {
            bail!("terminated: stopped every process the lab started; no report was written")
        }
    }
}

async fn run_experiment(
    args: &LabArgs,
    exp: &Experiment,
    topology: Option<&Topology>,
) -> anyhow::Result<std::process::ExitCode> {
    let started = Instant::now();
    let (started_at, stamp) = match &args.resume {
        Some(stamp) => (started_at_of(stamp)?, stamp.clone()),
        None => {
            let at = measure::machine::utc_now();
            let stamp = at.replace([':', '-'], "");
            (at, stamp)
        }
    };
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let commit_rate = if exp.commit_rate {
        Some(sqlite_commit_rate()?)
    } else {
        None
    };
    let repeats = args.repeat.map_or(exp.repeats, |r| r as usize);
    let n = exp.variants.len() * repeats;
    let mut outcomes = Vec::new();
    // Interleaved: every variant once per round, so whatever drifts on the
    // machine over the run (other load, the disk, the page cache) lands on
    // each variant alike instead of on the last one.
    for repeat in 1..=repeats {
        for (index, variant) in exp.variants.iter().enumerate() {
            let run = Run {
                exp,
                variant,
                index,
                repeat,
                tag: format!(
                    "[{}/{n}] {} (repeat {repeat} of {repeats})",
                    outcomes.len() + 1,
                    variant.label
                ),
                file: args.out_dir.join(format!(
                    "lab-{}-{}-{stamp}-r{repeat}.json",
                    exp.name, variant.label
                )),
            };
            let outcome = if args.resume.is_some() && run.file.exists() {
                eprintln!(
                    "lab {} {}: measured before, read from {}",
                    exp.name,
                    run.tag,
                    run.file.display()
                );
                run.read_back(args)?
            } else {
                run.measure(args, topology).await?
            };
            outcomes.push(outcome);
        }
    }

    let mut typed = report::report(
        args,
        exp,
        repeats,
        &outcomes,
        &started_at,
        started.elapsed(),
    );
    if let Some(rate) = commit_rate {
        typed.rest.insert("sqliteCommitRate".into(), rate);
    }
    // The chapter reads the experiment-specific tables by name.
    let report = serde_json::to_value(&typed)?;
    let md = chapter::markdown(exp, &report, &outcomes);
    let json_path = args
        .out_dir
        .join(format!("lab-{}-{stamp}.report.json", exp.name));
    let md_path = json_path.with_extension("md");
    crate::write_result(&json_path, &report)?;
    write_text(&md_path, &md)?;
    std::fs::create_dir_all(&args.docs_dir)
        .with_context(|| format!("cannot create {}", args.docs_dir.display()))?;
    let chapter = args.docs_dir.join(format!("{}.md", exp.name));
    write_text(&chapter, &md)?;
    println!("\n{md}");
    println!(
        "lab {} finished in {:.1} min; wrote {}, {} and {}",
        exp.name,
        started.elapsed().as_secs_f64() / 60.0,
        json_path.display(),
        md_path.display(),
        chapter.display()
    );
    println!(
        "its charts and the README's tables: cargo run --release -p dashboard -- report \
         (draws them from the result files into the chapter's Charts section)"
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// "2026-12-06T03:36:25Z" from the stamp "20261206T033625Z" of a run's
/// file names.
fn started_at_of(stamp: &str) -> anyhow::Result<String> {
    let b = stamp.as_bytes();
    anyhow::ensure!(
        b.len() == 16
            && b[8] == b'T'
            && b[15] == b'Z'
            && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit),
        "--resume {stamp:?}: expected the time stamp of a run's files, like 20261206T033625Z"
    );
    Ok(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    ))
}

/// The fixed load of a Method::Fixed experiment, visits/s.
fn fixed_rate(args: &LabArgs, exp: &Experiment) -> f64 {
    args.fixed_rate.or(exp.fixed_rate).unwrap_or(50.0)
}

fn write_text(path: &Path, text: &str) -> anyhow::Result<()> {
    measure::files::write_whole(path, text.as_bytes())
}

/// The step a variant is compared at: its last passing step (the breaking
/// point), or its last step when the SLO never broke.
fn key_step(o: &Outcome) -> Option<&Step> {
    match o.breaking_point.as_ref() {
        Some(bp) => step_at(&o.steps, bp, "arrivalRate", "users").or(o.steps.last()),
        None => o.steps.last(),
    }
}

/// The first step that broke the SLO, if the search found one.
fn failing_step(o: &Outcome) -> Option<&Step> {
    step_at(
        &o.steps,
        o.breaking_point.as_ref()?,
        "failingArrivalRate",
        "failingUsers",
    )
}

/// The step at the level the breaking point names under `rate` (open
/// model) or `users` (closed model).
fn step_at<'a>(steps: &'a [Step], bp: &Value, rate: &str, users: &str) -> Option<&'a Step> {
    match bp[rate].as_f64() {
        Some(r) => steps.iter().rev().find(|s| s.arrival_rate == Some(r)),
        None => {
            let users = bp[users].as_u64()?;
            steps.iter().rev().find(|s| s.users as u64 == users)
        }
    }
}
