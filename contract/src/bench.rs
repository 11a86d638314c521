//! Storage microbenchmarks (feature `bench`): the same use cases of the
//! [`Store`] trait on either backend, measured by criterion in-process
//! (no HTTP, no hashing), each against a target.
//!
//! A stage's `benches/storage.rs` opens its store and calls [`run`]; the
//! result file (`results/bench-storage-<stage>.json`,
//! `minigram.storagebench/1`) holds one row per operation — mean, median,
//! spread, target, met or not — and `dashboard report` renders it as the
//! table `operation | mean | target | status` in the docs.

use anyhow::Context;
use criterion::Criterion;
use minigram::domain::{Caption, PageQuery, PhotoId, UserId};
use minigram::store::{NewPhoto, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One measured use case and the mean it should stay under.
pub struct Operation {
    /// criterion's id (also its directory name).
    pub id: &'static str,
    pub name: &'static str,
    pub target_ms: f64,
    /// Where the target comes from.
    pub why: &'static str,
}

/// The operations and their targets, the same for both backends: the lab
/// asks the same of each architecture.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        id: "insert_photo_row",
        name: "write a photo row",
        target_ms: 5.0,
        why: "a durable commit; ≤ 5 ms lets one writer commit ≥ 200 writes/s, the write rate of the write-load experiment at its breaking point",
    },
    Operation {
        id: "like",
        name: "like a photo",
        target_ms: 5.0,
        why: "as above: one durable commit (the like row and the exact counter)",
    },
    Operation {
        id: "follow",
        name: "follow a user",
        target_ms: 5.0,
        why: "as above: one durable commit",
    },
    Operation {
        id: "feed_page",
        name: "read a feed page (a random viewer)",
        target_ms: 2.0,
        why: "the feed's server-side p50 target of stage 1 (2 ms, issue #2): storage must be a fraction of it",
    },
    Operation {
        id: "feed_page_hot",
        name: "read a feed page (10 hot viewers)",
        target_ms: 1.0,
        why: "a page read again soon after (stage 2: from the Redis cache)",
    },
];

/// What to seed and how long to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub users: usize,
    pub photos: usize,
    pub follows_per_user: usize,
    pub likes: usize,
    /// Short measurements on a small dataset: checks the benchmark runs.
    pub quick: bool,
    pub out: PathBuf,
    /// The command as a user types it, recorded in the file.
    pub command: String,
}

/// The dataset the process benchmarks seed: the lab's 10k users / 100k
/// photos by default, the small one of `--quick` with [`Self::quick`].
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DatasetFlags {
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    #[arg(long, default_value_t = 100_000)]
    pub photos: usize,
    #[arg(long, default_value_t = 50)]
    pub follows_per_user: usize,
    #[arg(long, default_value_t = 200_000)]
    pub likes: usize,
}

impl DatasetFlags {
    /// The small dataset of `--quick`: checks the benchmark runs.
    pub const QUICK: Self = Self {
        users: 200,
        photos: 2000,
        follows_per_user: 20,
        likes: 3000,
    };

    /// The flags of a stage's `seed` command for this dataset.
    pub fn seed_args(&self) -> Vec<String> {
        [
            ("--users", self.users),
            ("--photos", self.photos),
            ("--follows-per-user", self.follows_per_user),
            ("--likes", self.likes),
        ]
        .into_iter()
        .flat_map(|(flag, n)| [flag.to_owned(), n.to_string()])
        .collect()
    }

    /// The result file's `dataset`.
    pub fn json(&self) -> Value {
        json!({
            "users": self.users,
            "photos": self.photos,
            "followsPerUser": self.follows_per_user,
            "likes": self.likes,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} users / {} photos / {} follows per user / {} likes",
            self.users, self.photos, self.follows_per_user, self.likes
        )
    }
}

/// The flags every benchmark of the workspace takes after `cargo bench
/// ... --` (the process benchmarks flatten them into their own).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchFlags {
    /// A small dataset and short measurements: checks the benchmark runs.
    #[arg(long)]
    pub quick: bool,
    /// Result file (default: results/<its name>.json in the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl BenchFlags {
    /// `--out`, or `results/<file>` in the repository.
    pub fn out_or(&self, file: &str) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../results")
                .join(file)
        })
    }
}

/// The flags after `cargo bench -p stage-N --bench storage --`.
#[derive(Debug, clap::Parser)]
#[command(
    about = "Storage microbenchmarks: the Store use cases measured by criterion, each against a target"
)]
struct Flags {
    #[command(flatten)]
    run: BenchFlags,
}

impl Options {
    /// The defaults (the lab's 10k users / 100k photos dataset), or a
    /// small one with `--quick`; `--out FILE` overrides the result file.
    pub fn from_args(stage: &str, command: &str) -> Self {
        let flags = <Flags as clap::Parser>::parse().run;
        let (users, photos, follows_per_user, likes) = if flags.quick {
            (500, 5_000, 20, 5_000)
        } else {
            (10_000, 100_000, 50, 200_000)
        };
        Self {
            users,
            photos,
            follows_per_user,
            likes,
            quick: flags.quick,
            out: flags.out_or(&format!("bench-storage-{stage}.json")),
            command: command.to_owned(),
        }
    }
}

/// Seeds `store`, measures every operation, writes the result file and
/// prints the table. `backend` names the store in the file
/// (e.g. "stage-1 (SQLite, WAL, synchronous=FULL)").
pub fn run<S: Store>(
    rt: &tokio::runtime::Runtime,
    store: &S,
    uploads: &Path,
    stage: &str,
    backend: &str,
    opts: &Options,
) -> anyhow::Result<Value> {
    let seed = minigram::seed::SeedArgs {
        users: opts.users,
        photos: opts.photos,
        follows_per_user: opts.follows_per_user,
        likes: opts.likes,
        celebrity_percent: 0,
        seed: 42,
        argon2: minigram::auth::PasswordCost::OWASP,
    };
    eprintln!(
        "storage bench {stage}: seeding {} users, {} photos, {} follows per user, {} likes",
        seed.users, seed.photos, seed.follows_per_user, seed.likes
    );
    rt.block_on(minigram::cli::seed_into(store, uploads, &seed, stage))?;
    let criterion_dir = tempfile::tempdir()?;
    let mut c = Criterion::default()
        .output_directory(criterion_dir.path())
        .without_plots()
        .sample_size(if opts.quick { 10 } else { 30 })
        .warm_up_time(Duration::from_millis(if opts.quick { 200 } else { 1000 }))
        .measurement_time(Duration::from_millis(if opts.quick { 500 } else { 4000 }));
    let users = opts.users as i64;
    let photos = opts.photos as i64;
    let mut rng = StdRng::seed_from_u64(7);
    let mut file_no = 0u64;
    for op in OPERATIONS {
        c.bench_function(op.id, |b| match op.id {
            "insert_photo_row" => b.iter(|| {
                file_no += 1;
                let photo = NewPhoto {
                    user_id: UserId(rng.random_range(1..=users)),
                    caption: Caption::parse("a benchmark photo").expect("caption"),
                    file_name: format!("bench-{file_no:012}.jpg"),
                    width: 640,
                    height: 480,
                    status: minigram::store::PhotoStatus::Ready,
                };
                rt.block_on(store.insert_photo(photo))
                    .expect("insert photo")
            }),
            "like" => b.iter(|| {
                let user = UserId(rng.random_range(1..=users));
                let photo = PhotoId(rng.random_range(1..=photos));
                rt.block_on(store.set_like(user, photo, true))
                    .expect("like")
            }),
            "follow" => b.iter(|| {
                let a = rng.random_range(1..=users);
                let b = 1 + (a + rng.random_range(0..users - 1)) % users;
                rt.block_on(store.set_follow(UserId(a), UserId(b), true))
                    .expect("follow")
            }),
            "feed_page" | "feed_page_hot" => {
                let viewers = if op.id == "feed_page" { users } else { 10 };
                b.iter(|| {
                    let viewer = UserId(rng.random_range(1..=viewers));
                    let page = PageQuery::parse(Some("20"), None).expect("page");
                    rt.block_on(store.feed(viewer, page)).expect("feed")
                })
            }
            other => unreachable!("no benchmark for {other}"),
        });
    }
    c.final_summary();
    let mut rows = Vec::new();
    for op in OPERATIONS {
        let path = criterion_dir.path().join(op.id).join("new/estimates.json");
        let est: Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("criterion wrote no {}", path.display()))?,
        )?;
        let ms = |k: &str| est[k]["point_estimate"].as_f64().unwrap_or(f64::NAN) / 1e6;
        let mean = ms("mean");
        rows.push(json!({
            "operation": op.name,
            "id": op.id,
            "meanMs": mean,
            "meanLowMs": est["mean"]["confidence_interval"]["lower_bound"].as_f64().map(|x| x / 1e6),
            "meanHighMs": est["mean"]["confidence_interval"]["upper_bound"].as_f64().map(|x| x / 1e6),
            "medianMs": ms("median"),
            "stdDevMs": ms("std_dev"),
            "targetMs": op.target_ms,
            "met": mean <= op.target_ms,
            "why": op.why,
        }));
    }
    let result = json!({
        "schema": "minigram.storagebench/1",
        "stage": stage,
        "backend": backend,
        "command": opts.command,
        "quick": opts.quick,
        "commit": measure::machine::git_commit(),
        "machine": measure::machine::Machine::current(),
        "startedAt": measure::machine::utc_now(),
        "dataset": {
            "users": opts.users,
            "photos": opts.photos,
            "followsPerUser": opts.follows_per_user,
            "likes": opts.likes,
        },
        "method": "criterion, in-process calls of the Store trait on a tokio runtime (no HTTP, no password hashing); random users, photos and viewers from the seeded dataset",
        "operations": rows,
    });
    measure::files::write_json(&opts.out, &result)?;
    println!("\n{}", measure::results::storage_table(&result));
    println!("wrote {}", opts.out.display());
    Ok(result)
}
