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

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fleet::{DataAddrs, Fleet};
use crate::hostreport;
use crate::journeys::Mix;
use crate::servers::{self, Owned};
use crate::step::Step;
use crate::topology::Topology;
use crate::{Common, Record, verdict};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    One,
    Two,
}

impl Stage {
    fn bin(self) -> &'static str {
        match self {
            Stage::One => "stage-1",
            Stage::Two => "stage-2",
        }
    }
}

/// One side of a comparison: a stage, its flags, how many processes, and
/// the dataset as a multiple of the chosen one (1 for all but the
/// experiments that draw a cost curve over dataset sizes).
#[derive(Debug, Clone)]
struct Variant {
    label: &'static str,
    stage: Stage,
    flags: &'static [&'static str],
    processes: usize,
    scale: f64,
    /// A journey mix of its own (the experiment's when `None`), for
    /// experiments that repeat one change under two mixes.
    mix: Option<Mix>,
    /// An app–data round trip of its own on hosts (the topology's when
    /// `None`), for the experiment that changes only the link.
    rtt_ms: Option<f64>,
}

/// How the variants are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// The breaking-point search: the ladder of users, then bisection.
    Breaking,
    /// One step of `--fixed-users` users: latency at equal load.
    Fixed,
}

impl Method {
    /// The report's `method`.
    fn name(self) -> &'static str {
        match self {
            Method::Breaking => "breaking",
            Method::Fixed => "fixed",
        }
    }

    /// The `mode` of each variant's result file.
    fn mode(self) -> &'static str {
        match self {
            Method::Breaking => "breaking",
            Method::Fixed => "load",
        }
    }
}

/// The dataset a variant is seeded with.
#[derive(Debug, Clone, Copy)]
struct Dataset {
    users: usize,
    photos: usize,
    follows_per_user: usize,
    likes: usize,
}

impl Dataset {
    fn of(args: &LabArgs, scale: f64) -> Self {
        let s = |n: usize| ((n as f64 * scale).round() as usize).max(1);
        Self {
            users: s(args.dataset_users).max(args.dataset_follows_per_user + 1),
            photos: s(args.dataset_photos),
            follows_per_user: args.dataset_follows_per_user,
            likes: s(args.dataset_likes),
        }
    }

    fn json(&self) -> Value {
        json!({
            "users": self.users,
            "photos": self.photos,
            "followsPerUser": self.follows_per_user,
            "likes": self.likes,
        })
    }
}

/// A question, the variants that answer it (the first is the baseline),
/// and what the change costs.
#[derive(Debug, Clone)]
struct Experiment {
    name: &'static str,
    question: &'static str,
    change: &'static str,
    mix: Mix,
    method: Method,
    variants: Vec<Variant>,
    /// Requests whose p95 the cost-curve table shows, per dataset size
    /// (only for experiments whose variants differ in dataset size).
    curve: &'static [&'static str],
    /// Whether the report prices a sign-in (hash-cost): parameters,
    /// sign-ins per second at the SLO, CPU per sign-in.
    prices_sign_in: bool,
    /// Whether the run also measures SQLite's raw commit rate on this disk
    /// (`stage-1 commit-rate`), to read the writer's rate against.
    commit_rate: bool,
    /// The hosts it runs on by default (`None`: the shared box).
    topology: Option<&'static str>,
    /// Its own fixed load in visits/s (Method::Fixed), if not 50.
    fixed_rate: Option<f64>,
    tradeoff: &'static str,
    limits: &'static str,
}

const fn v(
    label: &'static str,
    stage: Stage,
    flags: &'static [&'static str],
    processes: usize,
) -> Variant {
    Variant {
        label,
        stage,
        flags,
        processes,
        scale: 1.0,
        mix: None,
        rtt_ms: None,
    }
}

/// A stage-1 variant on `scale` times the chosen dataset.
const fn sized(label: &'static str, flags: &'static [&'static str], scale: f64) -> Variant {
    Variant {
        label,
        stage: Stage::One,
        flags,
        processes: 1,
        scale,
        mix: None,
        rtt_ms: None,
    }
}

/// scale-out's hosts: with three app hosts, 1.5 of the machine's 2 cores
/// are promised (0.5 left for the kernel, the lab's own bookkeeping and
/// anything else running). Sized from a calibration run on hosts (one app
/// host, 64 visits/s, full dataset): per request the app used 0.43 ms of
/// CPU, Postgres 0.85 ms, Redis 0.06 ms and the generator 0.66 ms, so one
/// app host must be small next to Postgres for the app, not the
/// database, to be what one host runs out of.
const SCALE_OUT_TOPOLOGY: &str = "app=0.1,postgres=0.6,redis=0.1,generator=0.5";

/// stage1-vs-stage2's and network-latency's hosts: app hosts of C = 0.3
/// cores; Postgres and Redis together have 0.6, two app hosts' worth.
/// With two app hosts, 1.65 cores are promised.
const STAGE_TOPOLOGY: &str = "app=0.3,postgres=0.4,redis=0.2,generator=0.45";

fn experiments() -> Vec<Experiment> {
    use Stage::{One, Two};
    vec![
        Experiment {
            name: "stage1-vs-stage2",
            question: "At equal hardware, where does each architecture break, and what does each cost in cores?",
            change: "the architecture, on simulated hosts: stage 1 on one host of C cores → stage 2 on one app host of C cores plus its Postgres and Redis hosts → stage 2 with as many app hosts as its data hosts have cores (2 × C)",
            mix: Mix::Default,
            method: Method::Breaking,
            variants: vec![
                v("baseline", One, &[], 1),
                v("stage-2", Two, &[], 1),
                v("stage-2-two-app-hosts", Two, &[], 2),
            ],
            curve: &[],
            prices_sign_in: false,
            commit_rate: false,
            topology: Some(STAGE_TOPOLOGY),
            fixed_rate: None,
            tradeoff: "Stage 2 can add app hosts and survives losing one; it pays for that with network round trips to Postgres and Redis on every request and two more servers to run, each with cores of its own. The hosts row says what each variant costs in cores; the breaking points say what those cores buy.",
            limits: "The hosts are CPU budgets on one 2-core machine (cgroups): memory bandwidth, CPU caches and the disk are still shared, and the app–data network is loopback (no link latency; see network-latency). Stage 1's SQLite file and photos are on the same disk as stage 2's Postgres.",
        },
        Experiment {
            name: "cache-impact",
            question: "What does the Redis feed cache buy stage 2?",
            change: "stage 2's feed cache: off → on (`--feed-cache on`)",
            mix: Mix::Default,
            method: Method::Breaking,
            variants: vec![
                v("baseline", Two, &["--feed-cache", "off"], 1),
                v("cache-on", Two, &["--feed-cache", "on"], 1),
            ],
            curve: &[],
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: None,
            tradeoff: "Staleness: a cached first feed page shows others' likes up to 10 s late (your own writes invalidate your cache at once). Memory in Redis per active viewer, and invalidation work on every write (a new photo touches the owner's and every follower's cache).",
            limits: "Returning visits come from `--people` (500 by default) people with lasting sessions, and a cached first feed page lives 10 s: the fewer distinct people read their feed within 10 s, the fewer hits. Explore, profiles and writes are not cached.",
        },
        Experiment {
            name: "sqlite-modes",
            question: "What do SQLite's journal and sync modes cost stage 1, and what does each risk?",
            change: "journal DELETE + synchronous FULL (the classic default) → WAL + FULL (stage 1's default) → WAL + NORMAL",
            mix: Mix::Writes,
            method: Method::Breaking,
            variants: vec![
                v(
                    "baseline",
                    One,
                    &["--journal-mode", "delete", "--synchronous", "full"],
                    1,
                ),
                v(
                    "wal-full",
                    One,
                    &["--journal-mode", "wal", "--synchronous", "full"],
                    1,
                ),
                v(
                    "wal-normal",
                    One,
                    &["--journal-mode", "wal", "--synchronous", "normal"],
                    1,
                ),
            ],
            curve: &[],
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: None,
            tradeoff: "DELETE + FULL and WAL + FULL lose nothing on a crash or a power loss. WAL + NORMAL loses nothing on a process crash (tested by the crash test) but may lose the last commits before a checkpoint on a power loss or OS crash. OFF (not run) may lose recent commits and, with DELETE, corrupt the file.",
            limits: "fsync cost depends on the disk: this machine's virtual disk is not a laptop SSD or a server with a battery-backed cache. The writes mix's people keep their sessions and like, follow and upload on every visit, so the writer and the disk are what this measures, not password hashing.",
        },
        Experiment {
            name: "index-impact",
            question: "What does the feed's index buy stage 1, and how does its absence cost grow with the data?",
            change: "stage 1's index on photos (user_id, id): on → off (`--feed-index off`), measured at 1×, 0.1× and 4× the dataset",
            mix: Mix::Default,
            method: Method::Fixed,
            variants: vec![
                sized("baseline", &["--feed-index", "on"], 1.0),
                sized("no-index", &["--feed-index", "off"], 1.0),
                sized("index-0.1x", &["--feed-index", "on"], 0.1),
                sized("no-index-0.1x", &["--feed-index", "off"], 0.1),
                sized("index-4x", &["--feed-index", "on"], 4.0),
                sized("no-index-4x", &["--feed-index", "off"], 4.0),
            ],
            curve: &[
                "GET /api/feed",
                "GET /api/feed?before",
                "GET /api/users/{id}",
            ],
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: None,
            tradeoff: "The index costs disk space and one more B-tree to update on every new photo (a few microseconds per insert inside the single writer); without it every feed page and every profile's photo count reads the photos table, so the cost of a read grows with the data instead of with the page.",
            limits: "Every variant runs the same fixed load (`--fixed-users`, one step), so the table shows latency at equal load, not breaking points. SQLite's page cache and the OS file cache hold the whole 4× dataset in memory on this machine: a table scan here is CPU, not disk; on a cold or larger-than-memory database it would be far slower.",
        },
        Experiment {
            name: "queue-impact",
            question: "What does handing photo processing to a background worker change for stage 2?",
            change: "stage 2's photo processing (decode, downscale, re-encode a 2400 × 1800 JPEG): in the request (`--photo-processing inline`) → a Redis queue and one background worker per process (`--photo-processing queue`)",
            mix: Mix::Uploads,
            method: Method::Breaking,
            variants: vec![
                v("baseline", Two, &["--photo-processing", "inline"], 1),
                v("queue", Two, &["--photo-processing", "queue"], 1),
            ],
            curve: &[],
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: None,
            tradeoff: "The upload is acknowledged before the photo is processed: it answers 202 with `status: processing`, and the photo appears in feeds only when a worker has made it `ready` — the lag is the price, and it grows without bound if uploads outpace the workers (the queue is capped: past `--photo-queue-max` uploads get 503). Durability is unchanged: the raw upload and its row are committed before the 202, and a sweep re-queues photos whose job was lost with Redis. A failed decode can now only be reported later (`status: failed`), not in the upload's answer.",
            limits: "The worker runs on the same 2 cores as the app, Postgres, Redis and the generator, so the queue cannot add processing capacity here; it moves the work out of the request and bounds how much of it runs at once. With workers on other machines the result would differ. The queue's lag is read from the server's figures (last photo's upload-to-ready time), not from each photo.",
        },
        Experiment {
            name: "hash-cost",
            question: "What does one password hash cost, and what do OWASP's equivalent Argon2id parameter sets change, when every visit signs in?",
            change: "stage 1's Argon2id parameters (new hashes and the seeded accounts' hash, `--argon2`): m=19456,t=2,p=1 (OWASP's first choice, the default) → m=12288,t=3,p=1 → m=7168,t=5,p=1",
            mix: Mix::SignInEveryVisit,
            method: Method::Breaking,
            variants: vec![
                v("baseline", One, &["--argon2", "m=19456,t=2,p=1"], 1),
                v("m12-t3", One, &["--argon2", "m=12288,t=3,p=1"], 1),
                v("m7-t5", One, &["--argon2", "m=7168,t=5,p=1"], 1),
            ],
            curve: &[],
            prices_sign_in: true,
            commit_rate: false,
            topology: None,
            fixed_rate: None,
            tradeoff: "OWASP rates these sets as equally strong against offline guessing: each trades memory for passes (memory × passes: 38,912 / 36,864 / 35,840 KiB). The table above shows what each costs on this machine, in CPU per hash and in sign-ins per second at the SLO; less memory per hash also lets more hashes run in the same RAM (19, 12 or 7 MiB per hashing thread). Parameters cheaper than these would buy sign-ins with the users' password security.",
            limits: "The mix signs in on every visit (`sign-in-every-visit`), so the price of a hash dominates on purpose; real people sign in far more rarely (the default mix). CPU per hash is the hashing threads' own CPU time as the kernel counts it; on a busier machine each hash also waits for a core.",
        },
        Experiment {
            name: "pool-size",
            question: "How many Postgres connections should a stage-2 process hold?",
            change: "the Postgres pool of one stage-2 process: 2 → 10 (default) → 40 connections (`--pg-pool`)",
            mix: Mix::Default,
            method: Method::Breaking,
            variants: vec![
                v("baseline", Two, &["--pg-pool", "2"], 1),
                v("pool-10", Two, &["--pg-pool", "10"], 1),
                v("pool-40", Two, &["--pg-pool", "40"], 1),
            ],
            curve: &[],
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: None,
            tradeoff: "Each connection is a Postgres backend process with its own memory; more connections than cores mostly add context switches and lock contention inside Postgres.",
            limits: "Postgres shares the 2 cores with the app and the generator, so large pools cannot show their benefit on bigger database hosts.",
        },
        Experiment {
            name: "scale-out",
            question: "Does adding app hosts add capacity, and what stops it?",
            change: "stage-2 app hosts of equal size, the load spread evenly over them by the generator: 1 → 2 → 3, with Postgres and Redis on hosts of their own",
            mix: Mix::Default,
            method: Method::Breaking,
            variants: vec![
                v("baseline", Two, &[], 1),
                v("two-app-hosts", Two, &[], 2),
                v("three-app-hosts", Two, &[], 3),
            ],
            curve: &[],
            prices_sign_in: false,
            commit_rate: false,
            topology: Some(SCALE_OUT_TOPOLOGY),
            fixed_rate: None,
            tradeoff: "Each app host adds its own pools of connections to Postgres and Redis (10 each by default) and shares nothing in memory with the others (sessions and the cache live in Redis, which is why this works at all). Once a data host is full, more app hosts only queue in front of it: the next step is a bigger database host, read replicas or caching, not more app hosts.",
            limits: "The hosts are CPU budgets on one 2-core machine (cgroups): memory bandwidth, CPU caches and the disk are still shared, and the app–data network is loopback. There is no load balancer: the generator spreads visits over the app hosts itself. The USL over app hosts has as many points as variants; its uncertainty comes from the breaking-point search's resolution (the SLO broke somewhere between the last passing and the first failing step).",
        },
        Experiment {
            name: "network-latency",
            question: "How many round trips to its data does each stage-2 request make, and what does a slower network cost?",
            change: "the app–data round-trip time, on simulated hosts (a delaying link in front of Postgres and Redis): 0 → 0.5 → 2 ms, at one fixed load",
            mix: Mix::Default,
            method: Method::Fixed,
            variants: vec![
                Variant {
                    rtt_ms: Some(0.0),
                    ..v("baseline", Two, &[], 1)
                },
                Variant {
                    rtt_ms: Some(0.5),
                    ..v("rtt-0.5ms", Two, &[], 1)
                },
                Variant {
                    rtt_ms: Some(2.0),
                    ..v("rtt-2ms", Two, &[], 1)
                },
            ],
            curve: &[],
            prices_sign_in: false,
            commit_rate: false,
            topology: Some(STAGE_TOPOLOGY),
            fixed_rate: Some(20.0),
            tradeoff: "Every round trip a request makes in sequence costs one RTT of latency, however fast the servers are: a request's p50 grows by (round trips × RTT). Fewer, bigger round trips (one script instead of two commands, a join instead of two queries, pipelining) are what a slower network rewards.",
            limits: "The link delays every chunk of bytes by half the RTT each way (a TCP proxy; this kernel has no netem); it does not limit bandwidth or drop packets. The fixed load is light on purpose, so the p50 measures round trips, not queues; the slope is fitted to three points and rounds trips that overlap (pipelined or concurrent) count once.",
        },
        Experiment {
            name: "read-load",
            question: "Where do reads alone break each stage?",
            change: "the stage under an anonymous read-only load (explore, profiles, photos): stage 1 → stage 2",
            mix: Mix::Reads,
            method: Method::Breaking,
            variants: vec![v("baseline", One, &[], 1), v("stage-2", Two, &[], 1)],
            curve: &[],
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: None,
            tradeoff: "Reads need no hashing and no writer: this shows each stage's query path and HTTP overhead alone.",
            limits: "Anonymous reads skip the session lookup that signed-in reads pay.",
        },
        Experiment {
            name: "group-commit",
            question: "Is stage 1's single SQLite writer a limit of SQLite, or of committing every write alone?",
            change: "stage 1's writer: every write its own transaction and fsync (`--group-commit off`) → every write waiting in one transaction and one fsync (`--group-commit on`), under the write-heavy mix, then the same with the rollback journal (commits that cost several fsyncs, as on a slow disk), then under the default mix",
            mix: Mix::Writes,
            method: Method::Breaking,
            variants: vec![
                v("baseline", One, &["--group-commit", "off"], 1),
                v("group-commit", One, &["--group-commit", "on"], 1),
                v(
                    "delete-journal-off",
                    One,
                    &["--journal-mode", "delete", "--group-commit", "off"],
                    1,
                ),
                v(
                    "delete-journal-on",
                    One,
                    &["--journal-mode", "delete", "--group-commit", "on"],
                    1,
                ),
                Variant {
                    mix: Some(Mix::Default),
                    ..v("default-mix-off", One, &["--group-commit", "off"], 1)
                },
                Variant {
                    mix: Some(Mix::Default),
                    ..v("default-mix-on", One, &["--group-commit", "on"], 1)
                },
            ],
            curve: &[],
            prices_sign_in: false,
            commit_rate: true,
            topology: None,
            fixed_rate: None,
            tradeoff: "Nothing acknowledged is lost: a write is answered only after its group's COMMIT (and fsync) returned, as before (the crash test kills stage 1 under write load with group commit on). What a write pays instead: it waits for the writes ahead of it in its group to run (and, with `--group-commit-wait-us`, for the window), and a COMMIT that fails fails every write of its group (each gets the error; none was acknowledged). One write's own failure (a taken username, a missing photo) rolls back only its savepoint.",
            limits: "The write-heavy mix also decodes and re-encodes an image per upload on the app's CPU, on the same 2 cores as the writer and the load generator, so past some rate the CPU, not the disk, is what a faster writer runs into. The disk is this machine's virtual disk: its fsync cost is not a laptop's or a server's.",
        },
        Experiment {
            name: "write-load",
            question: "Where do writes break each stage?",
            change: "the stage under the write-heavy mix (registrations, follows, likes, uploads): stage 1 → stage 2",
            mix: Mix::Writes,
            method: Method::Breaking,
            variants: vec![v("baseline", One, &[], 1), v("stage-2", Two, &[], 1)],
            curve: &[],
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: None,
            tradeoff: "Stage 1 has one writer at a time behind a queue; stage 2 lets Postgres run writes in parallel but pays a round trip per statement.",
            limits: "Each upload decodes and re-encodes a small image on the app's CPU on both stages; the other writes are single-row transactions (one commit each).",
        },
    ]
}

/// Names of every experiment, for `--help` and errors.
pub fn names() -> Vec<&'static str> {
    experiments().iter().map(|e| e.name).collect()
}

fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name(name);
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace)",
        bin.display()
    );
    Ok(bin)
}

/// Starts `bin args` and waits for its "Minigram stage N on URL" line;
/// its log goes to `log`. The process is killed when the result drops;
/// its `addr` is the URL it serves on.
fn start_server(bin: &Path, args: &[String], log: &Path) -> anyhow::Result<Owned> {
    let mut cmd = Command::new(bin);
    cmd.args(args).env("RUST_LOG", "warn");
    let (child, line) =
        servers::start(cmd, &bin.display().to_string(), None, log, "Minigram stage")?;
    let url = line
        .split_once(" on http://")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .with_context(|| format!("{} said no URL: {line}", bin.display()))?;
    Ok(Owned {
        child,
        addr: format!("http://{url}"),
    })
}

/// Fresh storage for one variant, removed when dropped.
struct Storage {
    dir: tempfile::TempDir,
    pg: Option<Data>,
}

/// Stage 2's data: a new database and key prefix, on the shared servers
/// (dropped afterwards) or on a topology run's own (removed whole).
struct Data {
    server: String,
    db: String,
    redis: String,
    prefix: String,
    shared: bool,
}

impl Storage {
    /// `own`: a topology run's own Postgres and Redis (direct addresses).
    fn new(
        stage: Stage,
        args: &LabArgs,
        tag: &str,
        own: Option<DataAddrs>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("minigram-lab-").tempdir()?;
        let pg = (stage == Stage::Two).then(|| {
            let db = format!("minigram_lab_{}_{tag}", std::process::id());
            let shared = own.is_none();
            let (server, redis) = match own {
                Some(o) => (o.postgres, o.redis),
                None => (
                    args.postgres.trim_end_matches('/').to_owned(),
                    args.redis.clone(),
                ),
            };
            Data {
                server,
                prefix: format!("lab:{db}"),
                db,
                redis,
                shared,
            }
        });
        Ok(Self { dir, pg })
    }

    /// The storage flags of `seed` (and of `serve` without links).
    fn flags(&self) -> Vec<String> {
        self.flags_via(None)
    }

    /// The storage flags of `serve`: `via` the links of a topology run.
    fn flags_via(&self, via: Option<&DataAddrs>) -> Vec<String> {
        let mut f = vec![
            "--data-dir".to_owned(),
            self.dir.path().display().to_string(),
        ];
        if let Some(d) = &self.pg {
            let (server, redis) = match via {
                Some(v) => (v.postgres.as_str(), v.redis.as_str()),
                None => (d.server.as_str(), d.redis.as_str()),
            };
            f.extend([
                "--database-url".into(),
                format!("{server}/{}", d.db),
                "--redis-url".into(),
                redis.to_owned(),
                "--redis-prefix".into(),
                d.prefix.clone(),
            ]);
        }
        f
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(Data {
            server,
            db,
            redis,
            prefix,
            shared: true,
        }) = &self.pg
        {
            let dropped = Command::new("psql")
                .arg(format!("{server}/postgres"))
                .args([
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !dropped.is_ok_and(|s| s.success()) {
                eprintln!("lab: could not drop the database {db}: drop it by hand");
            }
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "redis-cli -u '{redis}' --scan --pattern '{prefix}:*' | xargs -r redis-cli -u '{redis}' del"
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The flags of a variant that `seed` must get too: the Argon2 parameters
/// (the seeded accounts' hash is what a sign-in verifies against).
fn seed_flags(flags: &[&str]) -> Vec<String> {
    flags
        .windows(2)
        .filter(|w| w[0] == "--argon2")
        .flat_map(|w| [w[0].to_owned(), w[1].to_owned()])
        .collect()
}

/// Fails with one clear line when a stage-2 variant's server is missing.
fn check_reachable(what: &str, url: &str, default_port: u16) -> anyhow::Result<()> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host_port = rest
        .rsplit('@')
        .next()
        .unwrap_or(rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let addr = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&addr.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    anyhow::ensure!(
        reachable,
        "this experiment needs {what} at {addr}, which does not answer: start it (scripts/services.sh does) or pass --postgres/--redis"
    );
    Ok(())
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
            t.fits(v.processes, v.stage == Stage::Two, v.label)?;
        }
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
    let started_at = minigram::machine::utc_now();
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
                let f = Fleet::start(t, variant.processes, variant.stage == Stage::Two, rtt_ms)?;
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
        let ds = Dataset::of(args, variant.scale);
        eprintln!(
            "lab {} {tag}: seeding {} users, {} photos into fresh {} storage",
            exp.name,
            ds.users,
            ds.photos,
            variant.stage.bin()
        );
        let seed = Command::new(&bin)
            .arg("seed")
            .args(storage.flags())
            .args(seed_flags(variant.flags))
            .args(["--users", &ds.users.to_string()])
            .args(["--photos", &ds.photos.to_string()])
            .args(["--follows-per-user", &ds.follows_per_user.to_string()])
            .args(["--likes", &ds.likes.to_string()])
            .output()
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

    let mut report = report_json(args, exp, &outcomes, &started_at, started.elapsed());
    if let Some(rate) = commit_rate {
        report["sqliteCommitRate"] = rate;
    }
    let md = markdown(exp, &report, &outcomes);
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
    Ok(std::process::ExitCode::SUCCESS)
}

/// The fixed load of a Method::Fixed experiment, visits/s.
fn fixed_rate(args: &LabArgs, exp: &Experiment) -> f64 {
    args.fixed_rate.or(exp.fixed_rate).unwrap_or(50.0)
}

fn write_text(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("md.partial");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The photo queue during a step, if the server has one working: photos
/// waiting (mean, peak) and the longest upload-to-visible time seen.
fn photo_queue(s: &Step) -> Option<Value> {
    let server = s.server.first()?;
    let secs = s.duration_secs;
    // A counter: its highest sample is the total at the end of the step.
    let processed = verdict::figure_peak(server, "photos.processed", secs);
    (processed > 0.0).then(|| {
        json!({
            "meanWaiting": verdict::figure_mean(server, "photos.queued", secs),
            "peakWaiting": verdict::figure_peak(server, "photos.queued", secs),
            "peakLagMs": verdict::figure_peak(server, "photos.lagMs", secs),
            "processedTotal": processed,
        })
    })
}

/// SQLite's raw commit rate on this machine's disk, per journal mode (WAL
/// and the rollback journal, both synchronous FULL), measured by
/// `stage-1 commit-rate` in a fresh temporary database each.
fn sqlite_commit_rate() -> anyhow::Result<Value> {
    let mut rates = json!({
        "command": "stage-1 commit-rate --secs 5 --journal-mode wal|delete (synchronous FULL, one-row transactions)"
    });
    for mode in ["wal", "delete"] {
        let dir = tempfile::Builder::new()
            .prefix("minigram-commit-rate-")
            .tempdir()?;
        eprintln!(
            "lab: measuring SQLite's raw commit rate on this disk, journal {mode} (stage-1 commit-rate, 5 s)"
        );
        let out = Command::new(binary("stage-1")?)
            .args([
                "commit-rate",
                "--secs",
                "5",
                "--journal-mode",
                mode,
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .context("cannot run stage-1 commit-rate")?;
        anyhow::ensure!(
            out.status.success(),
            "stage-1 commit-rate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        rates[mode] =
            serde_json::from_slice(&out.stdout).context("stage-1 commit-rate printed no JSON")?;
    }
    Ok(rates)
}

/// Stage 1's writer during a step, if the server has one: writes and
/// commits per second, writes per commit, writes queued (mean, peak).
fn sqlite_writer(s: &Step) -> Option<Value> {
    let server = s.server.first()?;
    let secs = s.duration_secs;
    let mean = |key: &str| verdict::figure_mean(server, key, secs);
    let writes = mean("sqlite.writes");
    let commits = mean("sqlite.commits");
    (writes > 0.0).then(|| {
        json!({
            "writesPerSec": writes,
            "commitsPerSec": commits,
            "writesPerCommit": if commits > 0.0 { writes / commits } else { 0.0 },
            "meanWaiting": mean("sqlite.writersWaiting"),
            "peakWaiting": verdict::figure_peak(server, "sqlite.writersWaiting", secs),
            "queueMsPerSec": mean("sqlite.writeWaitMs"),
            "readersBusy": mean("sqlite.readersBusy"),
            "readersReading": mean("sqlite.readMs") / 1000.0,
        })
    })
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

fn report_json(
    args: &LabArgs,
    exp: &Experiment,
    outcomes: &[Outcome],
    started_at: &str,
    took: Duration,
) -> Value {
    let variants: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let key = key_step(o);
            let failing = failing_step(o);
            json!({
                "label": o.variant.label,
                "stage": o.variant.stage.bin(),
                "flags": o.variant.flags,
                "processes": o.variant.processes,
                "mix": o.variant.mix.unwrap_or(exp.mix).name(),
                "dataset": o.dataset.json(),
                "scale": o.variant.scale,
                "resultFile": o.file.file_name().map(|f| f.to_string_lossy().into_owned()),
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
            })
        })
        .collect();
    json!({
        "schema": "minigram.lab/1",
        "experiment": exp.name,
        "question": exp.question,
        "change": exp.change,
        "mix": exp.mix.name(),
        "commit": env!("MINIGRAM_BUILD_COMMIT"),
        "machine": minigram::machine::Machine::current(),
        "startedAt": started_at,
        "command": command_line(),
        "minutes": took.as_secs_f64() / 60.0,
        "method": exp.method.name(),
        "dataset": Dataset::of(args, 1.0).json(),
        "load": {
            "model": match args.model { Model::Open => "open", Model::Closed => "closed" },
            "people": args.people,
            "ladder": match (exp.method, args.model) {
                (Method::Breaking, Model::Open) => format!("visits started per second (open model), {} doubling up to {}, then {} bisection steps", args.arrival_rate, args.max_arrival_rate, args.bisect),
                (Method::Breaking, Model::Closed) => format!("{} users doubling up to {} (closed model), then {} bisection steps", args.users, args.max_users, args.bisect),
                (Method::Fixed, Model::Open) => format!("one step of {} visits/s per variant (open model; equal load, no breaking-point search)", fixed_rate(args, exp)),
                (Method::Fixed, Model::Closed) => format!("one step of {} users per variant (closed model; equal load, no breaking-point search)", args.fixed_users),
            },
            "stepSecs": args.step_secs,
            "thinkMs": args.think_ms,
            "slo": args.slo,
        },
        "uslOverHosts": hostreport::usl_over_hosts(&variants),
        "roundTrips": hostreport::round_trips(&variants),
        "variants": variants,
        "tradeoff": exp.tradeoff,
        "limits": exp.limits,
    })
}

/// The command as a user would type it (`loadtests lab …`, not the
/// binary's full path).
fn command_line() -> String {
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

fn f1(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.1}"))
}

/// The cost curve: for each dataset size (ascending), the p95 of the
/// experiment's chosen requests under each setting, and their ratio.
fn cost_curve(md: &mut String, exp: &Experiment, variants: &[Value]) {
    let mut scales: Vec<f64> = variants
        .iter()
        .filter_map(|v| v["scale"].as_f64())
        .collect();
    scales.sort_by(f64::total_cmp);
    scales.dedup();
    let at = |scale: f64, k: usize| {
        variants
            .iter()
            .filter(|v| v["scale"].as_f64() == Some(scale))
            .nth(k)
    };
    let setting = |k: usize| {
        at(1.0, k).map_or(String::new(), |v| {
            v["flags"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        })
    };
    let (a, b) = (setting(0), setting(1));
    md.push_str(&format!(
        "### The cost curve\n\np50 / p95 (ms) of each request as the dataset grows, `{a}` vs `{b}`, and the ratios (p50 ratio / p95 ratio; same fixed load):\n\n| photos | users |"
    ));
    for r in exp.curve {
        md.push_str(&format!(" {r}: `{a}` | `{b}` | ratio |"));
    }
    md.push_str(&format!(
        "\n|---:|---:|{}\n",
        "---:|---:|---:|".repeat(exp.curve.len())
    ));
    for &scale in &scales {
        let (Some(x), Some(y)) = (at(scale, 0), at(scale, 1)) else {
            continue;
        };
        md.push_str(&format!(
            "| {} | {} |",
            x["dataset"]["photos"], x["dataset"]["users"]
        ));
        for r in exp.curve {
            let p = |v: &Value, q: &str| v["atBreakingPoint"]["requests"][*r][q].as_f64();
            let cell = |v: &Value| match (p(v, "p50Ms"), p(v, "p95Ms")) {
                (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                _ => "–".into(),
            };
            let ratio = |q: &str| match (p(x, q), p(y, q)) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.1}×", b / a),
                _ => "–".into(),
            };
            md.push_str(&format!(
                " {} | {} | {} / {} |",
                cell(x),
                cell(y),
                ratio("p50Ms"),
                ratio("p95Ms")
            ));
        }
        md.push('\n');
    }
    md.push('\n');
}

/// A load level as people read it: "64 visits/s" (open model) or "32 users".
fn level(rate: &Value, users: &Value) -> String {
    match rate.as_f64() {
        Some(r) => format!("{r} visits/s"),
        None => format!("{users} users"),
    }
}

/// The price of a sign-in per variant: its Argon2 parameters, sign-ins per
/// second at the breaking point, the hashing threads' CPU per hash, and
/// the whole server's CPU per sign-in (every request of the step, so an
/// upper bound).
/// The writer's writes per second at each variant's breaking point, as a
/// share of SQLite's raw commit rate measured in the same run, and each
/// group-commit variant against the variant before it (off → on).
fn writer_against_disk(md: &mut String, report: &Value, variants: &[Value]) {
    let rates = &report["sqliteCommitRate"];
    let raw = |mode: &str| rates[mode]["commitsPerSec"].as_f64().unwrap_or(0.0);
    md.push_str(&format!(
        "### The writer against the disk\n\nSQLite's raw commit rate on this disk, measured in the same run (`{}`): **{:.0} commits/s** with WAL, **{:.0} commits/s** with the rollback journal (DELETE).\n\n| variant | writes/s at the breaking point | commits/s | share of the raw commit rate of its journal (writes/s ÷ raw) | writes/s vs the variant before |\n|---|---:|---:|---:|---:|\n",
        rates["command"].as_str().unwrap_or("stage-1 commit-rate"),
        raw("wal"),
        raw("delete")
    ));
    let mut before: Option<f64> = None;
    for v in variants {
        let w = &v["sqliteWriter"];
        let (Some(writes), Some(commits)) =
            (w["writesPerSec"].as_f64(), w["commitsPerSec"].as_f64())
        else {
            continue;
        };
        let flags = v["flags"].as_array().cloned().unwrap_or_default();
        let on = flags.iter().any(|x| x == "on");
        let journal = if flags.iter().any(|x| x == "delete") {
            "delete"
        } else {
            "wal"
        };
        let ratio = match (on, before) {
            (true, Some(b)) if b > 0.0 => format!("{:.2}×", writes / b),
            _ => "–".into(),
        };
        md.push_str(&format!(
            "| {} | {writes:.0} | {commits:.0} | {:.0}% ({journal}) | {ratio} |\n",
            v["label"].as_str().unwrap_or(""),
            if raw(journal) > 0.0 {
                writes / raw(journal) * 100.0
            } else {
                0.0
            }
        ));
        before = Some(writes);
    }
    md.push('\n');
}

fn sign_in_price(md: &mut String, variants: &[Value]) {
    md.push_str("### The price of a sign-in\n\n| variant | Argon2id parameters | sign-ins/s at the SLO | CPU per hash (ms) | server CPU per sign-in, all work included (ms) |\n|---|---|---:|---:|---:|\n");
    for v in variants {
        let at = &v["atBreakingPoint"];
        let work = &at["serverWork"];
        let hashes = work["passwordHashes"].as_f64().unwrap_or(0.0);
        let per = |secs: &Value| match secs.as_f64() {
            Some(s) if hashes > 0.0 => format!("{:.1}", s * 1000.0 / hashes),
            _ => "–".into(),
        };
        let params = v["flags"]
            .as_array()
            .and_then(|f| {
                f.iter()
                    .position(|x| x == "--argon2")
                    .and_then(|i| f.get(i + 1))
            })
            .and_then(|p| p.as_str())
            .unwrap_or("m=19456,t=2,p=1 (default)")
            .to_owned();
        md.push_str(&format!(
            "| {} | `{params}` | {} | {} | {} |\n",
            v["label"].as_str().unwrap_or(""),
            f1(&at["signInsPerSec"]),
            per(&work["passwordHashCpuSeconds"]),
            per(&work["cpuSeconds"]),
        ));
    }
    md.push('\n');
}

/// What one variant's line under "Observation" says after its label.
fn observation(v: &Value, fixed: bool) -> String {
    if fixed {
        let at = &v["atBreakingPoint"];
        return format!(
            " ({} photos): {} gave {} req/s at p95 {} ms, {:.2} % errors; busiest: {}.",
            v["dataset"]["photos"],
            level(&at["arrivalRate"], &at["users"]),
            f1(&at["rps"]),
            f1(&at["p95Ms"]),
            at["errorRate"].as_f64().unwrap_or(0.0) * 100.0,
            v["busiest"].as_str().unwrap_or("–")
        );
    }
    match v["breakingPoint"].as_object() {
        Some(bp) => format!(
            ": held the SLO up to {} ({} req/s); at {} {}; saturated: {}.",
            level(&bp["arrivalRate"], &bp["users"]),
            f1(&bp["rps"]),
            level(&bp["failingArrivalRate"], &bp["failingUsers"]),
            bp["brokenBy"].as_str().unwrap_or(""),
            bp["saturated"].as_str().unwrap_or("")
        ),
        None => ": held the SLO at every step of the ladder.".into(),
    }
}

fn markdown(exp: &Experiment, report: &Value, outcomes: &[Outcome]) -> String {
    let m = &report["machine"];
    let mut md = String::new();
    let line = |md: &mut String, s: String| {
        md.push_str(&s);
        md.push('\n');
    };
    line(&mut md, format!("# Experiment: {}\n", exp.name));
    line(
        &mut md,
        format!(
            "<!-- Generated by `{}` — re-run it to replace every number below with your own. -->\n",
            report["command"].as_str().unwrap_or("loadtests lab")
        ),
    );
    line(&mut md, format!("**Question.** {}\n", exp.question));
    line(&mut md, "## Baseline and load\n".into());
    let base = &outcomes[0].variant;
    line(
        &mut md,
        format!(
            "Baseline: `{}{}` ({} process{}). Dataset: {} users, {} photos, {} follows per user, {} likes, seeded fresh for every variant{}. Load: the `{}` journey mix, {}, {} s per step, think time {} ms, SLO `{}`. Machine: {} cores, {} MiB, {}; commit `{}`; {}.\n",
            base.stage.bin(),
            if base.flags.is_empty() {
                " with its defaults".to_owned()
            } else {
                format!(" {}", base.flags.join(" "))
            },
            base.processes,
            if base.processes == 1 { "" } else { "es" },
            report["dataset"]["users"],
            report["dataset"]["photos"],
            report["dataset"]["followsPerUser"],
            report["dataset"]["likes"],
            if outcomes.iter().any(|o| o.variant.scale != 1.0) {
                " (variants named 0.1x or 4x get that multiple of the users, photos and likes)"
            } else {
                ""
            },
            if outcomes.iter().any(|o| o.variant.mix.is_some()) {
                "(per variant, see the table)"
            } else {
                report["mix"].as_str().unwrap_or("")
            },
            report["load"]["ladder"].as_str().unwrap_or(""),
            report["load"]["stepSecs"],
            report["load"]["thinkMs"].as_str().unwrap_or(""),
            report["load"]["slo"].as_str().unwrap_or(""),
            m["cores"],
            m["memoryMib"],
            m["cpu"].as_str().unwrap_or(""),
            report["commit"].as_str().unwrap_or(""),
            report["startedAt"].as_str().unwrap_or("")
        ),
    );
    line(&mut md, format!("## The change\n\n{}\n", exp.change));
    line(&mut md, "## Comparison\n".into());
    let variants = report["variants"].as_array().cloned().unwrap_or_default();
    let header: Vec<String> = variants
        .iter()
        .map(|v| v["label"].as_str().unwrap_or("").to_owned())
        .collect();
    line(&mut md, format!("| | {} |", header.join(" | ")));
    line(&mut md, format!("|---|{}", "---:|".repeat(header.len())));
    let row = |md: &mut String, name: &str, cell: &dyn Fn(&Value) -> String| {
        let cells: Vec<String> = variants.iter().map(cell).collect();
        md.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    };
    let fixed = exp.method == Method::Fixed;
    if variants.iter().any(|v| v["topology"].is_object()) {
        row(&mut md, "hosts (cores promised)", &|v| {
            format!(
                "{} ({:.2} cores)",
                v["topology"]["text"].as_str().unwrap_or("shared box"),
                v["topology"]["cores"].as_f64().unwrap_or(0.0)
            )
        });
    }
    if outcomes.iter().any(|o| o.variant.mix.is_some()) {
        row(&mut md, "journey mix", &|v| {
            format!("`{}`", v["mix"].as_str().unwrap_or(""))
        });
    }
    if fixed {
        row(&mut md, "dataset (users / photos)", &|v| {
            format!("{} / {}", v["dataset"]["users"], v["dataset"]["photos"])
        });
        row(&mut md, "load (fixed)", &|v| {
            let at = &v["atBreakingPoint"];
            level(&at["arrivalRate"], &at["users"])
        });
        row(&mut md, "throughput (req/s)", &|v| {
            f1(&v["atBreakingPoint"]["rps"])
        });
    } else {
        row(
            &mut md,
            "breaking point",
            &|v| match v["breakingPoint"].as_object() {
                Some(bp) => level(&bp["arrivalRate"], &bp["users"]),
                None => "SLO held".into(),
            },
        );
        row(&mut md, "throughput there (req/s)", &|v| {
            f1(&v["atBreakingPoint"]["rps"])
        });
    }
    if report["load"]["model"] == "open" {
        row(&mut md, "visits in progress (mean / peak)", &|v| {
            let c = &v["atBreakingPoint"]["visitsInProgress"];
            format!("{} / {}", f1(&c["mean"]), c["peak"])
        });
    }
    row(
        &mut md,
        "sign-ins and registrations (% of requests)",
        &|v| {
            v["atBreakingPoint"]["signInShare"]
                .as_f64()
                .map_or("–".into(), |x| format!("{:.2}", x * 100.0))
        },
    );
    row(&mut md, "p50 (ms)", &|v| f1(&v["atBreakingPoint"]["p50Ms"]));
    row(&mut md, "p95 (ms)", &|v| f1(&v["atBreakingPoint"]["p95Ms"]));
    row(&mut md, "p99 (ms)", &|v| f1(&v["atBreakingPoint"]["p99Ms"]));
    for class in crate::slo::Class::ALL {
        row(&mut md, &format!("p95 of {} (ms)", class.name()), &|v| {
            f1(&v["atBreakingPoint"]["classes"][class.name()]["p95Ms"])
        });
    }
    row(&mut md, "error rate (%)", &|v| {
        v["atBreakingPoint"]["errorRate"]
            .as_f64()
            .map_or("–".into(), |e| format!("{:.2}", e * 100.0))
    });
    if variants.iter().any(|v| v["photoQueue"].is_object()) {
        row(
            &mut md,
            "photos waiting for the worker (mean / peak)",
            &|v| match v["photoQueue"].as_object() {
                Some(q) => format!("{} / {}", f1(&q["meanWaiting"]), f1(&q["peakWaiting"])),
                None => "– (no queue)".into(),
            },
        );
        row(&mut md, "upload to visible, longest (s)", &|v| {
            v["photoQueue"]["peakLagMs"]
                .as_f64()
                .map_or("– (in the request)".into(), |ms| {
                    format!("{:.1}", ms / 1000.0)
                })
        });
    }
    if variants.iter().any(|v| v["sqliteWriter"].is_object()) {
        let w = |v: &Value, key: &str| v["sqliteWriter"][key].as_f64();
        row(&mut md, "SQLite writes/s (commits/s)", &|v| match (
            w(v, "writesPerSec"),
            w(v, "commitsPerSec"),
        ) {
            (Some(a), Some(b)) => format!("{a:.0} ({b:.0})"),
            _ => "–".into(),
        });
        row(&mut md, "writes per commit", &|v| {
            w(v, "writesPerCommit").map_or("–".into(), |x| format!("{x:.1}"))
        });
        row(
            &mut md,
            "writes queued for the writer (mean / peak)",
            &|v| match (w(v, "meanWaiting"), w(v, "peakWaiting")) {
                (Some(a), Some(b)) => format!("{a:.1} / {b:.0}"),
                _ => "–".into(),
            },
        );
        row(
            &mut md,
            "read connections held / reading (mean of 8)",
            &|v| match (w(v, "readersBusy"), w(v, "readersReading")) {
                (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                _ => "–".into(),
            },
        );
    }
    if fixed {
        row(&mut md, "busiest resource", &|v| {
            v["busiest"].as_str().unwrap_or("–").to_owned()
        });
    } else {
        row(&mut md, "SLO broken by", &|v| {
            v["breakingPoint"]["brokenBy"]
                .as_str()
                .unwrap_or("–")
                .to_owned()
        });
        row(&mut md, "saturated first", &|v| {
            v["breakingPoint"]["saturated"]
                .as_str()
                .unwrap_or("–")
                .to_owned()
        });
        row(&mut md, "USL σ (contention)", &|v| {
            v["usl"]["sigma"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.4}"))
        });
        row(&mut md, "USL κ (coherency)", &|v| {
            v["usl"]["kappa"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.6}"))
        });
        row(
            &mut md,
            "USL predicted peak (concurrency)",
            &|v| match serde_json::from_value::<minigram::usl::UslFit>(v["usl"].clone()) {
                Ok(fit) => match fit.supported_peak() {
                    Some((n, _)) => format!("{n:.0}"),
                    None => fit.peak_caveat(),
                },
                Err(_) => "–".into(),
            },
        );
    }
    row(&mut md, "result file", &|v| {
        format!("`{}`", v["resultFile"].as_str().unwrap_or(""))
    });
    md.push('\n');
    line(
        &mut md,
        if fixed {
            "p95 per request at the fixed load (ms):\n".into()
        } else {
            "p95 per request at each variant's breaking point (ms):\n".into()
        },
    );
    line(&mut md, format!("| request | {} |", header.join(" | ")));
    line(&mut md, format!("|---|{}", "---:|".repeat(header.len())));
    let mut names: Vec<String> = variants
        .iter()
        .filter_map(|v| v["atBreakingPoint"]["requests"].as_object())
        .flat_map(|r| r.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        row(&mut md, &name, &|v| {
            f1(&v["atBreakingPoint"]["requests"][&name]["p95Ms"])
        });
    }
    md.push('\n');
    if !exp.curve.is_empty() {
        cost_curve(&mut md, exp, &variants);
    }
    if exp.prices_sign_in {
        sign_in_price(&mut md, &variants);
    }
    if report["sqliteCommitRate"].is_object() {
        writer_against_disk(&mut md, report, &variants);
    }
    hostreport::hosts_markdown(&mut md, &variants);
    hostreport::usl_markdown(&mut md, &report["uslOverHosts"]);
    hostreport::round_trips_markdown(&mut md, &report["roundTrips"]);
    line(&mut md, "## Observation\n".into());
    for v in &variants {
        line(
            &mut md,
            format!(
                "- **{}**{}",
                v["label"].as_str().unwrap_or(""),
                observation(v, fixed)
            ),
        );
    }
    md.push('\n');
    line(&mut md, format!("## Trade-off\n\n{}\n", exp.tradeoff));
    line(
        &mut md,
        format!(
            "## Limits of this experiment\n\n{} {}; {}; each step is one {}-second measurement, so differences of a few percent are within run-to-run noise.\n",
            exp.limits,
            if variants.iter().any(|v| v["topology"].is_object()) {
                "The load generator runs in a host of its own, inside its CPU budget (the hosts table shows what it used)"
            } else {
                "The load generator runs on the same machine as the servers (its CPU share is in each result file)"
            },
            if report["load"]["model"] == "open" {
                "the load is an open model (visits start on schedule, each a person with think times between their actions; latency is timed from the scheduled start)"
            } else {
                "the load is a closed model with think times (users, not arrivals per second)"
            },
            report["load"]["stepSecs"]
        ),
    );
    line(
        &mut md,
        format!(
            "Reproduce: `{}` (about {:.0} minutes here).",
            report["command"].as_str().unwrap_or(""),
            report["minutes"].as_f64().unwrap_or(0.0).ceil()
        ),
    );
    md
}
