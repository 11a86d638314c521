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
mod setup;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::fleet::Fleet;
use crate::step::Step;
use crate::topology::Topology;
use crate::{Common, Record, verdict};
pub use catalogue::names;
use catalogue::{Dataset, Experiment, Method, Stage, Variant, experiments};
use setup::{Storage, binary, check_reachable, seed_flags, sqlite_commit_rate, start_server};

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
    /// Bisection steps after the ladder.
    #[arg(long, default_value_t = 3)]
    pub bisect: usize,
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

/// What one variant measured.
struct Outcome {
    variant: Variant,
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
    let started_at = measure::machine::utc_now();
    let stamp = started_at.replace([':', '-'], "");
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let commit_rate = if exp.commit_rate {
        Some(sqlite_commit_rate()?)
    } else {
        None
    };
    let n = exp.variants.len();
    let mut outcomes = Vec::new();
    for (i, variant) in exp.variants.iter().enumerate() {
        let tag = format!("[{}/{n}] {}", i + 1, variant.label);
        let rtt_ms = variant.rtt_ms.or(topology.and_then(|t| t.rtt_ms));
        let fleet = match topology {
            Some(t) => {
                let f = Fleet::start(t, variant.shape(), rtt_ms)?;
                eprintln!(
                    "lab {} {tag}: hosts: {}",
                    exp.name,
                    f.record["text"].as_str().unwrap_or("")
                );
                Some(f)
            }
            None => None,
        };
        let storage = Storage::new(
            variant.stage,
            args,
            variant.label.replace('-', "_").as_str(),
            fleet.as_ref().and_then(Fleet::direct),
        )?;
        let bin = binary(variant.stage.bin())?;
        let ds = Dataset::of(args, variant.scale, variant.mix.unwrap_or(exp.mix));
        eprintln!(
            "lab {} {tag}: seeding {} users, {} photos into fresh {} storage",
            exp.name,
            ds.users,
            ds.photos,
            variant.stage.bin()
        );
        // Awaited, and killed if the run is interrupted meanwhile: seeding
        // takes minutes on small hosts, and Ctrl-C must not wait for it.
        let seed = tokio::process::Command::new(&bin)
            .kill_on_drop(true)
            .arg("seed")
            .args(storage.flags())
            .args(seed_flags(variant.flags))
            .args(["--users", &ds.users.to_string()])
            .args(["--photos", &ds.photos.to_string()])
            .args(["--follows-per-user", &ds.follows_per_user.to_string()])
            .args(["--likes", &ds.likes.to_string()])
            .args(["--celebrity-percent", &ds.celebrity_percent.to_string()])
            .output()
            .await
            .with_context(|| format!("cannot run {} seed", bin.display()))?;
        anyhow::ensure!(
            seed.status.success(),
            "{} seed failed: {}",
            bin.display(),
            String::from_utf8_lossy(&seed.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        if let Some(f) = &fleet {
            f.replicas_caught_up(std::time::Duration::from_secs(600))
                .await?;
        }
        let mut servers = Vec::new();
        let via = fleet.as_ref().and_then(Fleet::for_app);
        for p in 0..variant.processes {
            let mut serve = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
            serve.extend(storage.flags_via(via.as_ref()));
            serve.extend(variant.flags.iter().map(|f| f.to_string()));
            let log = storage.dir.path().join(format!("server-{p}.log"));
            servers.push(start_server(&bin, &serve, &log)?);
        }
        let hosts: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
        eprintln!(
            "lab {} {tag}: {} {} on {}",
            exp.name,
            variant.stage.bin(),
            variant.flags.join(" "),
            hosts.join(", ")
        );
        let common = Common {
            hosts: hosts.clone(),
            json_out: None,
            users: args.users,
            arrival_rate: (args.model == Model::Open).then_some(args.arrival_rate),
            max_visits: args.max_visits,
            people: args.people,
            newcomer_share: None,
            signed_out_share: None,
            logout_share: None,
            duration: args.step_secs,
            seeded_users: ds.users,
            think_ms: args.think_ms.clone(),
            slo: args.slo.clone(),
            mix: variant.mix.unwrap_or(exp.mix),
            ack_log: None,
            // The lab places the generator itself (its topology's host).
            generator_cpus: None,
        };
        let (slo, journeys, servers_meta) = crate::prepare(&common, false).await?;
        // Into their hosts only now: signing the people in (not measured)
        // would take minutes of password hashing on a small budget.
        if let Some(f) = &fleet {
            for (server, host) in servers.iter().zip(&f.apps) {
                host.place(server.child.id())?;
            }
        }
        let load_json = crate::load_model(&common, &journeys);
        let stage = servers_meta[0]["stage"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        let out = args
            .out_dir
            .join(format!("lab-{}-{}-{stamp}.json", exp.name, variant.label));
        let report = out.with_extension("html");
        let cpu_hosts = fleet.as_ref().map_or(&[][..], |f| f.hosts.all());
        let plan = crate::step::planner(&hosts, journeys, &report, false, cpu_hosts);
        // The load is generated inside the generator's host, if any.
        let inside = match &fleet {
            Some(f) => Some(f.hosts.enter(&f.generator)?),
            None => None,
        };
        if args.warmup_secs > 0 {
            let level = match (exp.method, args.model) {
                (Method::Fixed, Model::Open) => fixed_rate(args, exp),
                (Method::Fixed, Model::Closed) => args.fixed_users as f64,
                (Method::Breaking, _) => common.start_level(),
            };
            // Measured like a step, then dropped: nothing of it is kept.
            verdict::measure(&plan, common.load(level), args.warmup_secs, "warm-up").await?;
        }
        let (steps, bp) = match exp.method {
            Method::Breaking => {
                let max = match args.model {
                    Model::Open => args.max_arrival_rate,
                    Model::Closed => args.max_users as f64,
                };
                verdict::breaking(
                    &plan,
                    &|level| common.load(level),
                    common.start_level(),
                    max,
                    args.step_secs,
                    args.bisect,
                    &slo,
                )
                .await?
            }
            Method::Fixed => {
                let level = match args.model {
                    Model::Open => fixed_rate(args, exp),
                    Model::Closed => args.fixed_users as f64,
                };
                let step =
                    verdict::measure(&plan, common.load(level), args.step_secs, "fixed load")
                        .await?;
                (vec![step], None)
            }
        };
        drop(inside);
        let mut result = crate::result_json(&Record {
            mode: exp.method.mode(),
            mix: variant.mix.unwrap_or(exp.mix),
            stage: &stage,
            hosts: &hosts,
            slo: &slo,
            dataset: ds.json(),
            steps: &steps,
            breaking_point: &bp,
            summary: &json!({"processes": variant.processes, "flags": variant.flags}),
            report: &report,
            experiment: Some(json!({
                "name": exp.name,
                "variant": variant.label,
                "change": if i == 0 { Value::Null } else { json!(exp.change) },
            })),
            load: load_json,
        });
        let topology_record = fleet.as_ref().map(|f| f.record.clone());
        result["topology"] = topology_record.clone().into();
        crate::write_result(&out, &result)?;
        crate::print_table(&steps);
        drop(plan);
        drop(servers);
        drop(storage);
        drop(fleet);
        outcomes.push(Outcome {
            variant: variant.clone(),
            dataset: ds,
            file: out,
            steps,
            breaking_point: bp,
            topology: topology_record,
        });
    }

    let mut typed = report::report(args, exp, &outcomes, &started_at, started.elapsed());
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
