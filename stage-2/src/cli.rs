//! Stage 2's command line: `serve` (the default), `seed` and `check`.

use clap::{Parser, Subcommand};
use minigram::cli::{AppArgs, Toggle, uploads_dir};
use minigram::seed::SeedArgs;
use std::path::PathBuf;
use std::time::Duration;

use crate::store::{FeedStrategy, Stage2Config, Stage2Store};

const EXAMPLES: &str = "Examples:
  stage-2                                   serve on 127.0.0.1:8081 with local Postgres and Redis
  stage-2 --listen 127.0.0.1:8082           a second process: same database, same Redis, same uploads
  stage-2 --database-url postgres://postgres@db:5432/minigram --redis-url redis://cache:6379
  stage-2 --feed-cache off                  every feed read goes to Postgres
  stage-2 --read-replica postgres://postgres@127.0.0.1:5433/minigram   reads on a streaming replica
  stage-2 check                             after a crash: are the data consistent?
  stage-2 drop-data --database-url postgres://postgres@127.0.0.1:5432/scratch --redis-prefix scratch --yes
  stage-2 seed --users 10000 --photos 100000 --follows-per-user 50 --likes 200000";

#[derive(Debug, Parser)]
#[command(name = "stage-2", version,
    about = "Minigram stage 2: stateless processes on pooled Postgres and Redis",
    after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Minigram over HTTP (the default).
    Serve(ServeArgs),
    /// Fill an empty database with a generated dataset (COPY).
    Seed(SeedCommand),
    /// Check the stored data for consistency (e.g. after a crash); exit 1 on a problem.
    Check(StorageArgs),
    /// Drop the database of --database-url and delete the Redis keys under
    /// --redis-prefix (what a lab run leaves); needs --yes.
    DropData(DropDataArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DropDataArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Confirms the data may go: nothing is dropped without it.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MINIGRAM_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: String,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SeedCommand {
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub seed: SeedArgs,
}

/// Where stage 2 keeps its state.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// Directory of uploads/ (shared by every stage-2 process).
    #[arg(long, env = "MINIGRAM_DATA_DIR", default_value = "./data/stage-2")]
    pub data_dir: PathBuf,
    /// Postgres; the database is created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/minigram"
    )]
    pub database_url: String,
    /// Redis for sessions, sign-in throttling and the photo queue: state
    /// that must never be evicted (run it with `--maxmemory-policy noeviction`).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Redis for the feed cache, if not the --redis-url server: a cache can
    /// run with `allkeys-lru` under memory pressure there.
    #[arg(long, env = "CACHE_REDIS_URL")]
    pub cache_redis_url: Option<String>,
    /// Prefix of every Redis key (several labs can share one Redis).
    #[arg(long, env = "MINIGRAM_REDIS_PREFIX", default_value = "minigram")]
    pub redis_prefix: String,
    /// Postgres connections in this process's pool.
    #[arg(long, env = "MINIGRAM_PG_POOL", default_value_t = 10)]
    pub pg_pool: u32,
    /// Redis connections in this process's pool.
    #[arg(long, env = "MINIGRAM_REDIS_POOL", default_value_t = 16)]
    pub redis_pool: u32,
    /// How long a request waits for a pooled connection before a 503.
    #[arg(long, env = "MINIGRAM_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    pub acquire_timeout_ms: u64,
    /// Calls that may wait for a connection of each pool (Postgres, Redis)
    /// at once; one more gets a 503 at once instead of waiting out the
    /// timeout (0: none wait).
    #[arg(long, env = "MINIGRAM_POOL_QUEUE_MAX", default_value_t = 64)]
    pub pool_queue_max: u32,
    /// The Redis feed cache.
    #[arg(long, env = "MINIGRAM_FEED_CACHE", value_enum, default_value = "on")]
    pub feed_cache: Toggle,
    /// Seconds a cached feed lives (plus up to 10 s of jitter).
    #[arg(long, env = "MINIGRAM_FEED_CACHE_TTL", default_value_t = 60)]
    pub feed_cache_ttl: u64,
    /// Seconds a cached first feed page lives: the longest that likes by
    /// *others* can take to show in it (your own show at once).
    #[arg(long, env = "MINIGRAM_FEED_PAGE_TTL", default_value_t = 10)]
    pub feed_page_ttl: u64,
    /// Where uploads are decoded, resized and re-encoded: `inline` in the
    /// request (201), or `queue`d for background workers (202; the photo
    /// is `processing` until a worker has made it `ready`).
    #[arg(
        long,
        env = "MINIGRAM_PHOTO_PROCESSING",
        value_enum,
        default_value = "inline"
    )]
    pub photo_processing: Processing,
    /// Background photo workers in this process (with `queue`).
    #[arg(long, env = "MINIGRAM_PHOTO_WORKERS", default_value_t = 1)]
    pub photo_workers: usize,
    /// Queued photos at most (with `queue`); past it uploads get 503.
    #[arg(long, env = "MINIGRAM_PHOTO_QUEUE_MAX", default_value_t = 1000)]
    pub photo_queue_max: u64,
    /// A Postgres read replica (a streaming standby of --database-url);
    /// repeat for more. Explore, profiles, photos and the uncached feed
    /// are read there; each person still reads their own writes.
    #[arg(
        long = "read-replica",
        env = "MINIGRAM_READ_REPLICAS",
        value_delimiter = ','
    )]
    pub read_replicas: Vec<String>,
    /// A replica further behind than this (ms) is not read at all.
    #[arg(long, env = "MINIGRAM_REPLICA_MAX_LAG_MS", default_value_t = 10_000)]
    pub replica_max_lag_ms: u64,
    /// How a feed page is made: `pull` (a query over the people followed,
    /// at read time), `push` (precomputed timelines in Redis, written by
    /// fan-out workers when a photo is posted) or `hybrid` (push, except
    /// for accounts with more than --celebrity-followers followers, whose
    /// photos are merged in at read time).
    #[arg(
        long,
        env = "MINIGRAM_FEED_STRATEGY",
        value_enum,
        default_value = "pull"
    )]
    pub feed_strategy: FeedStrategy,
    /// Hybrid: accounts with more followers than this are not fanned out.
    #[arg(long, env = "MINIGRAM_CELEBRITY_FOLLOWERS", default_value_t = 1000)]
    pub celebrity_followers: usize,
    /// Fan-out worker tasks in this process (push, hybrid).
    #[arg(long, env = "MINIGRAM_FANOUT_WORKERS", default_value_t = 1)]
    pub fanout_workers: usize,
    /// A photo handed to a fan-out worker and not done after this long
    /// (ms) is taken over by another worker: the first one died.
    #[arg(long, env = "MINIGRAM_FANOUT_CLAIM_AFTER_MS", default_value_t = 30_000)]
    pub fanout_claim_after_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Processing {
    Inline,
    Queue,
}

impl StorageArgs {
    pub fn config(&self) -> Stage2Config {
        Stage2Config {
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
            cache_redis_url: self.cache_redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            pg_pool_size: self.pg_pool,
            redis_pool_size: self.redis_pool,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
            pool_queue_max: self.pool_queue_max,
            pg_ping_idle_after: Stage2Config::PING_IDLE_AFTER,
            feed_cache: self.feed_cache == Toggle::On,
            feed_cache_ttl: Duration::from_secs(self.feed_cache_ttl),
            feed_page_ttl: Duration::from_secs(self.feed_page_ttl),
            photo_queue: self.photo_processing == Processing::Queue,
            photo_workers: self.photo_workers,
            photo_queue_max: self.photo_queue_max.max(1),
            read_replicas: self.read_replicas.clone(),
            replica_poll: Stage2Config::REPLICA_POLL,
            replica_max_lag: Duration::from_millis(self.replica_max_lag_ms),
            feed_strategy: self.feed_strategy,
            celebrity_followers: self.celebrity_followers,
            fanout_workers: self.fanout_workers.max(1),
            fanout_claim_after: Duration::from_millis(self.fanout_claim_after_ms.max(100)),
            ..Stage2Config::new(&self.database_url, &self.redis_url)
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Seed(args)) => seed_command(args).await,
        Some(Command::Check(storage)) => {
            let store = Stage2Store::connect(storage.config()).await?;
            let uploads = uploads_dir(&storage.data_dir);
            minigram::cli::check_store(&store, &uploads, &storage.database_url).await
        }
        Some(Command::DropData(args)) => {
            let s = &args.storage;
            anyhow::ensure!(
                args.yes,
                "this drops the database of --database-url and the Redis keys {}:*; add --yes",
                s.redis_prefix
            );
            crate::cleanup::drop_data(&s.database_url, &s.redis_url, &s.redis_prefix).await
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = Stage2Store::connect(args.storage.config()).await?;
    let s = &args.storage;
    let describe = format!(
        "uploads: {}, Postgres pool {}, Redis pool {}, feed cache {:?}, photo processing {:?}, read replicas {}, feed strategy {:?}",
        s.data_dir.display(),
        s.pg_pool,
        s.redis_pool,
        s.feed_cache,
        s.photo_processing,
        s.read_replicas.len(),
        s.feed_strategy
    );
    let images = args.app.image_pool()?;
    if s.photo_processing == Processing::Queue {
        crate::worker::start(store.clone(), uploads_dir(&s.data_dir), images.clone());
    }
    crate::fanout::start(store.clone());
    minigram::cli::serve(
        "stage-2",
        store,
        uploads_dir(&s.data_dir),
        &args.listen,
        &args.app,
        images,
        &describe,
    )
    .await
}

async fn seed_command(args: SeedCommand) -> anyhow::Result<()> {
    let store = Stage2Store::connect(args.storage.config()).await?;
    let uploads = uploads_dir(&args.storage.data_dir);
    minigram::cli::seed_into(&store, &uploads, &args.seed, &args.storage.database_url).await?;
    eprintln!(
        "wrote {} and {}",
        args.storage.database_url,
        uploads.display()
    );
    Ok(())
}
