//! The lab's experiments: each a question, its variants (the first is the
//! baseline; each other changes one thing), the load mix and method, and
//! what the change costs. Adding an experiment is adding an entry to
//! [`experiments`] and, if its report needs a table of its own, a section
//! in `chapter.rs`.

use serde_json::{Value, json};

use super::LabArgs;
use crate::journeys::{Mix, name};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    One,
    Two,
}

impl Stage {
    pub(super) fn bin(self) -> &'static str {
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
pub(super) struct Variant {
    pub(super) label: &'static str,
    pub(super) stage: Stage,
    pub(super) flags: &'static [&'static str],
    pub(super) processes: usize,
    pub(super) scale: f64,
    /// A journey mix of its own (the experiment's when `None`), for
    /// experiments that repeat one change under two mixes.
    pub(super) mix: Option<Mix>,
    /// An app–data round trip of its own on hosts (the topology's when
    /// `None`), for the experiment that changes only the link.
    pub(super) rtt_ms: Option<f64>,
    /// Streaming read replicas of its Postgres, each on a host of the
    /// topology's `replica` size (stage 2 on hosts only).
    pub(super) replicas: usize,
}

impl Variant {
    /// What it places on a topology.
    pub(super) fn shape(&self) -> crate::topology::Shape {
        crate::topology::Shape {
            apps: self.processes,
            replicas: self.replicas,
            stage2: self.stage == Stage::Two,
        }
    }
}

/// How the variants are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    /// The breaking-point search: the ladder of users, then bisection.
    Breaking,
    /// One step of `--fixed-users` users: latency at equal load.
    Fixed,
}

impl Method {
    /// The report's `method`.
    pub(super) fn name(self) -> &'static str {
        match self {
            Method::Breaking => "breaking",
            Method::Fixed => "fixed",
        }
    }

    /// The `mode` of each variant's result file.
    pub(super) fn mode(self) -> &'static str {
        match self {
            Method::Breaking => "breaking",
            Method::Fixed => "load",
        }
    }
}

/// The share of users who follow the celebrity (`user1`) in the datasets
/// of the `celebrity` mix.
pub(super) const CELEBRITY_PERCENT: u8 = 80;

/// The dataset a variant is seeded with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dataset {
    pub(super) users: usize,
    pub(super) photos: usize,
    pub(super) follows_per_user: usize,
    pub(super) likes: usize,
    /// Users who also follow `user1` (`seed --celebrity-percent`).
    pub(super) celebrity_percent: u8,
}

impl Dataset {
    /// The chosen dataset scaled by `scale`, for a load of `mix` (the
    /// celebrity mix needs its celebrity seeded).
    pub(super) fn of(args: &LabArgs, scale: f64, mix: Mix) -> Self {
        let s = |n: usize| ((n as f64 * scale).round() as usize).max(1);
        Self {
            users: s(args.dataset_users).max(args.dataset_follows_per_user + 1),
            photos: s(args.dataset_photos),
            follows_per_user: args.dataset_follows_per_user,
            likes: s(args.dataset_likes),
            celebrity_percent: if mix == Mix::Celebrity {
                CELEBRITY_PERCENT
            } else {
                0
            },
        }
    }

    pub(super) fn json(&self) -> Value {
        json!({
            "users": self.users,
            "photos": self.photos,
            "followsPerUser": self.follows_per_user,
            "likes": self.likes,
            "celebrityPercent": self.celebrity_percent,
        })
    }
}

/// A question, the variants that answer it (the first is the baseline),
/// and what the change costs.
#[derive(Debug, Clone)]
pub(super) struct Experiment {
    pub(super) name: &'static str,
    pub(super) question: &'static str,
    pub(super) change: &'static str,
    pub(super) mix: Mix,
    pub(super) method: Method,
    pub(super) variants: Vec<Variant>,
    /// The comparisons it makes, (A, B) as labels: B is read against A.
    /// `None`: every variant against the baseline.
    pub(super) comparisons: Option<&'static [(&'static str, &'static str)]>,
    /// How many times each variant runs when `--repeat` is not given.
    pub(super) repeats: usize,
    /// Requests whose p95 the cost-curve table shows, per dataset size
    /// (only for experiments whose variants differ in dataset size).
    pub(super) curve: &'static [&'static str],
    /// Whether the report prices a sign-in (hash-cost): parameters,
    /// sign-ins per second at the SLO, CPU per sign-in.
    pub(super) prices_sign_in: bool,
    /// Whether the run also measures SQLite's raw commit rate on this disk
    /// (`stage-1 commit-rate`), to read the writer's rate against.
    pub(super) commit_rate: bool,
    /// The hosts it runs on by default (`None`: the shared box).
    pub(super) topology: Option<&'static str>,
    /// Its own fixed load in visits/s (Method::Fixed), if not 50.
    pub(super) fixed_rate: Option<f64>,
    pub(super) tradeoff: &'static str,
    pub(super) limits: &'static str,
}

pub(super) const fn v(
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
        replicas: 0,
    }
}

/// A stage-1 variant on `scale` times the chosen dataset.
pub(super) const fn sized(
    label: &'static str,
    flags: &'static [&'static str],
    scale: f64,
) -> Variant {
    Variant {
        label,
        stage: Stage::One,
        flags,
        processes: 1,
        scale,
        mix: None,
        rtt_ms: None,
        replicas: 0,
    }
}

/// scale-out's hosts: with three app hosts, 1.5 of the machine's 2 cores
/// are promised (0.5 left for the kernel, the lab's own bookkeeping and
/// anything else running). Sized from a calibration run on hosts (one app
/// host, 64 visits/s, full dataset): per request the app used 0.43 ms of
/// CPU, Postgres 0.85 ms, Redis 0.06 ms and the generator 0.66 ms, so one
/// app host must be small next to Postgres for the app, not the
/// database, to be what one host runs out of.
pub(super) const SCALE_OUT_TOPOLOGY: &str = "app=0.1,postgres=0.6,redis=0.1,generator=0.5";

/// stage1-vs-stage2's and network-latency's hosts: app hosts of C = 0.3
/// cores; Postgres and Redis together have 0.6, two app hosts' worth.
/// With two app hosts, 1.65 cores are promised.
pub(super) const STAGE_TOPOLOGY: &str = "app=0.3,postgres=0.4,redis=0.2,generator=0.45";

/// read-replicas' hosts: the primary and each replica get the same
/// budget, so a Postgres host, not the app's, is what the uncached feeds
/// run out of. Sized from the first reference run (0.2-core Postgres
/// hosts, app 0.5, generator 0.45): at 124 req/s the app used 0.125
/// cores, the generator 0.13 and Redis 0.006, while 0.2-core Postgres
/// hosts broke the SLO half-used (one uncached feed query waits out
/// several quota periods). So the Postgres hosts are larger here, and the
/// app and generator have room for twice that load. With two replicas,
/// 1.65 cores are promised.
pub(super) const READ_REPLICAS_TOPOLOGY: &str =
    "app=0.35,postgres=0.3,replica=0.3,redis=0.05,generator=0.35";

/// Runs of each variant for a reference run: enough for a median and a
/// range (the `repeatability` experiment measures how wide that range is).
pub(super) const DEFAULT_REPEATS: usize = 3;

impl Experiment {
    /// The comparisons as variant indices (A, B): the named ones, or every
    /// variant against the baseline.
    pub(super) fn pairs(&self) -> Vec<(usize, usize)> {
        let at = |label: &str| {
            self.variants
                .iter()
                .position(|v| v.label == label)
                .expect("the catalogue's comparisons name its variants")
        };
        match self.comparisons {
            None => (1..self.variants.len()).map(|b| (0, b)).collect(),
            Some(named) => named.iter().map(|(a, b)| (at(a), at(b))).collect(),
        }
    }
}

pub(super) fn experiments() -> Vec<Experiment> {
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
            comparisons: Some(&[
                ("baseline", "stage-2"),
                ("baseline", "stage-2-two-app-hosts"),
                ("stage-2", "stage-2-two-app-hosts"),
            ]),
            repeats: DEFAULT_REPEATS,
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
            comparisons: None,
            repeats: DEFAULT_REPEATS,
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
            comparisons: None,
            repeats: DEFAULT_REPEATS,
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
            curve: &[name::FEED, name::FEED_OLDER, name::PROFILE],
            comparisons: None,
            repeats: DEFAULT_REPEATS,
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
            comparisons: None,
            repeats: DEFAULT_REPEATS,
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
            comparisons: None,
            repeats: DEFAULT_REPEATS,
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
            comparisons: None,
            repeats: DEFAULT_REPEATS,
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
            comparisons: None,
            repeats: DEFAULT_REPEATS,
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
            comparisons: None,
            repeats: DEFAULT_REPEATS,
            prices_sign_in: false,
            commit_rate: false,
            topology: Some(STAGE_TOPOLOGY),
            fixed_rate: Some(20.0),
            tradeoff: "Every round trip a request makes in sequence costs one RTT of latency, however fast the servers are: a request's p50 grows by (round trips × RTT). Fewer, bigger round trips (one script instead of two commands, a join instead of two queries, pipelining) are what a slower network rewards.",
            limits: "The link delays every chunk of bytes by half the RTT each way (a TCP proxy; this kernel has no netem); it does not limit bandwidth or drop packets. The fixed load is light on purpose, so the p50 measures round trips, not queues; the slope is fitted to three points and rounds trips that overlap (pipelined or concurrent) count once.",
        },
        Experiment {
            name: "read-replicas",
            question: "What do streaming read replicas add to stage 2 when reads outweigh writes, and what do they cost in staleness?",
            change: "stage 2's Postgres, on simulated hosts of equal size, with the feed cache off so every feed is a query: the primary alone → the primary plus one streaming read replica → plus two (`--read-replica URL` per replica; explore, profiles, photos and feeds are read from the replicas, round-robin, writes and sign-ins stay on the primary)",
            mix: Mix::Default,
            method: Method::Breaking,
            variants: vec![
                v("baseline", Two, &["--feed-cache", "off"], 1),
                Variant {
                    replicas: 1,
                    ..v("one-replica", Two, &["--feed-cache", "off"], 1)
                },
                Variant {
                    replicas: 2,
                    ..v("two-replicas", Two, &["--feed-cache", "off"], 1)
                },
            ],
            curve: &[],
            comparisons: None,
            repeats: DEFAULT_REPEATS,
            prices_sign_in: false,
            commit_rate: false,
            topology: Some(READ_REPLICAS_TOPOLOGY),
            fixed_rate: None,
            tradeoff: "A replica is a whole Postgres host more, and what it serves may be behind the primary by the replication lag (the table shows it at the breaking point): other people may see a new photo, like or follow that late. The writer is spared that (read-your-writes: after a write, their reads go to the primary until a replica has replayed it — the 'own write' column), which costs every write one more Postgres and one more Redis round trip. Reads go to the replicas, not the primary — it keeps the writes and sign-ins — so one replica mostly moves the reads; a second one adds read capacity.",
            limits: "The feed cache is off in every variant, so feeds are Postgres queries (with it on, a cached feed is read from Redis and its misses from the primary). The hosts are CPU budgets on one 2-core machine (cgroups): the replicas share the disk, the memory bandwidth and the kernel with the primary, and replication runs over loopback, so the lag shown is replay work, not network distance.",
        },
        Experiment {
            name: "feed-strategy",
            question: "What do precomputed timelines (fan-out on write) change for stage 2's feed and uploads, and how late do followers see a photo?",
            change: "stage 2's feed, at one fixed load with the feed cache off: a query over the people followed at read time (`--feed-strategy pull`) → timelines written by fan-out workers when a photo is posted (`push`) → push except for accounts with more than 50 followers, merged at read time (`hybrid --celebrity-followers 50`: about half the seeded accounts)",
            mix: Mix::Default,
            method: Method::Fixed,
            variants: vec![
                v(
                    "baseline",
                    Two,
                    &["--feed-cache", "off", "--feed-strategy", "pull"],
                    1,
                ),
                v(
                    "push",
                    Two,
                    &["--feed-cache", "off", "--feed-strategy", "push"],
                    1,
                ),
                v(
                    "hybrid",
                    Two,
                    &[
                        "--feed-cache",
                        "off",
                        "--feed-strategy",
                        "hybrid",
                        "--celebrity-followers",
                        "50",
                    ],
                    1,
                ),
            ],
            curve: &[],
            comparisons: None,
            repeats: DEFAULT_REPEATS,
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: Some(100.0),
            tradeoff: "Push moves the feed's work from the read to the write: a feed is one Redis read and one query by primary key, but every photo becomes a write per follower (in the background: the upload waits only for one Redis script), timelines take Redis memory per person, and followers see a photo after the fan-out lag (the table shows it). Hybrid spares the accounts with many followers that fan-out (the celebrity problem) and pays for it in every follower's feed query, which merges their recent photos in.",
            limits: "The seeded follow graph is uniform (50 random follows per user), so no account is a real celebrity: hybrid's threshold of 50 splits the accounts about in half to show the read-time merge's cost, not the celebrity problem itself (the `celebrity` experiment does). Every variant runs the same fixed load on the shared box, so the table compares latency and work at equal load, not breaking points. Timelines are built on a person's first feed read: the first reads of each person are queries in every variant.",
        },
        Experiment {
            name: "celebrity",
            question: "What does one account followed by most users cost fan-out on write, and what does hybrid save?",
            change: "stage 2's timelines while a celebrity (`user1`, followed by 80 % of the seeded users) posts 5 photos a second among 100 visits/s of the default mix, feed cache off: every photo fanned out to every follower (`--feed-strategy push`, one fan-out worker) → the same with four workers (`--fanout-workers 4`: is the one worker the limit?) → accounts with more than 1000 followers not fanned out, their photos merged into each follower's feed at read time (`hybrid`, the default threshold)",
            mix: Mix::Celebrity,
            method: Method::Fixed,
            variants: vec![
                v(
                    "baseline",
                    Two,
                    &["--feed-cache", "off", "--feed-strategy", "push"],
                    1,
                ),
                v(
                    "four-workers",
                    Two,
                    &[
                        "--feed-cache",
                        "off",
                        "--feed-strategy",
                        "push",
                        "--fanout-workers",
                        "4",
                    ],
                    1,
                ),
                v(
                    "hybrid",
                    Two,
                    &["--feed-cache", "off", "--feed-strategy", "hybrid"],
                    1,
                ),
            ],
            curve: &[],
            comparisons: None,
            repeats: DEFAULT_REPEATS,
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: Some(100.0),
            tradeoff: "Push writes a celebrity's photo into thousands of timelines (the table's timeline writes per second, almost all of them the celebrity's), so its followers read it from Redis at the cost of that write traffic, Redis memory per follower and a fan-out lag that grows with the follower count; hybrid writes none of it and instead merges the celebrity's recent photos into every follower's feed query.",
            limits: "One process and one Redis on the shared box, so the workers, Redis, Postgres and the generator share two cores, at one fixed load: the table compares the work and the latencies at equal load, not where each breaks. The seeded graph is skewed as before (a few early accounts are followed by hundreds) plus the celebrity; with the default threshold of 1000 followers only the celebrity (and at most a few of the most popular accounts) is merged at read time.",
        },
        Experiment {
            name: "read-load",
            question: "Where do reads alone break each stage?",
            change: "the stage under an anonymous read-only load (explore, profiles, photos): stage 1 → stage 2",
            mix: Mix::Reads,
            method: Method::Breaking,
            variants: vec![v("baseline", One, &[], 1), v("stage-2", Two, &[], 1)],
            curve: &[],
            comparisons: None,
            repeats: DEFAULT_REPEATS,
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
            // Each switch against the same mix and journal with it off.
            comparisons: Some(&[
                ("baseline", "group-commit"),
                ("delete-journal-off", "delete-journal-on"),
                ("default-mix-off", "default-mix-on"),
            ]),
            repeats: DEFAULT_REPEATS,
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
            comparisons: None,
            repeats: DEFAULT_REPEATS,
            prices_sign_in: false,
            commit_rate: false,
            topology: None,
            fixed_rate: None,
            tradeoff: "Stage 1 has one writer at a time behind a queue; stage 2 lets Postgres run writes in parallel but pays a round trip per statement.",
            limits: "Each upload decodes and re-encodes a small image on the app's CPU on both stages; the other writes are single-row transactions (one commit each).",
        },
        Experiment {
            name: "repeatability",
            question: "How much does a figure of this lab move when nothing changes? The same two variants, run again and again",
            change: "nothing: stage 1 with its defaults and stage 2 with its defaults, each on stage1-vs-stage2's hosts, run again and again (five times unless `--repeat` says otherwise) in interleaved order (stage 1, stage 2, stage 1 …), each time on fresh storage and fresh servers",
            mix: Mix::Default,
            method: Method::Breaking,
            variants: vec![v("baseline", One, &[], 1), v("stage-2", Two, &[], 1)],
            curve: &[],
            // Two architectures side by side, not a change: nothing to compare.
            comparisons: Some(&[]),
            repeats: 5,
            prices_sign_in: false,
            commit_rate: false,
            topology: Some(STAGE_TOPOLOGY),
            fixed_rate: None,
            tradeoff: "None: this experiment measures the test bed. The coefficient of variation (standard deviation ÷ mean over the repeats) of a variant's breaking point and of its req/s at the SLO says how far apart two of this lab's runs of the same code can land; a difference between variants smaller than that is noise. The ladder's resolution is part of it: the search doubles the load and then bisects, so a breaking point can only land on the levels it tries.",
            limits: "Five repeats give a rough spread, not a distribution. The hosts are CPU budgets on one 2-core machine (cgroups): memory bandwidth, CPU caches, the disk and the kernel are shared, and so is whatever else the machine runs meanwhile.",
        },
    ]
}

/// Names of every experiment, for `--help` and errors.
pub fn names() -> Vec<&'static str> {
    experiments().iter().map(|e| e.name).collect()
}
