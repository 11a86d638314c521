//! Stage 1's command line: `serve` (the default), `seed` and `check`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use minigram::cli::{AppArgs, Toggle, uploads_dir};
use minigram::seed::SeedArgs;
use std::path::PathBuf;
use std::time::Duration;

use crate::store::{JournalMode, SqliteConfig, SqliteStore, Synchronous, database_path};
use crate::writer::GroupCommit;

const EXAMPLES: &str = "Examples:
  stage-1                                   serve on 127.0.0.1:8080 with ./data/stage-1
  stage-1 --listen 0.0.0.0:9000 --data-dir /tmp/mg
  stage-1 --journal-mode delete --synchronous full   the slow, classic rollback journal
  stage-1 --group-commit off                every write its own commit and fsync
  stage-1 --feed-index off                  feed and profiles without their index (a table scan)
  stage-1 check --data-dir /tmp/mg          after a crash: are the data consistent?
  stage-1 seed --users 10000 --photos 100000 --follows-per-user 50 --likes 200000";

#[derive(Debug, Parser)]
#[command(name = "stage-1", version, about = "Minigram stage 1: one process, one SQLite file, photos on disk",
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
    /// Fill an empty data directory with a generated dataset.
    Seed(SeedCommand),
    /// Check the stored data for consistency (e.g. after a crash); exit 1 on a problem.
    Check(StorageArgs),
    /// Measure SQLite's raw commit rate here (one-row transactions, one
    /// after another) in a fresh database in --data-dir; print it as JSON.
    CommitRate(CommitRateArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CommitRateArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// How long to commit, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MINIGRAM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The feed and profile index on photos (user_id, id): `off` drops it,
    /// so every feed page and profile scans the photos table (the
    /// index-impact experiment); `on` (re)creates it.
    #[arg(long, env = "MINIGRAM_FEED_INDEX", value_enum, default_value = "on")]
    pub feed_index: Toggle,
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

/// Where and how stage 1 stores data. The defaults keep every acknowledged
/// write through a crash or a power loss; see README for the trade-offs.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// Directory of the SQLite file (minigram.sqlite3) and uploads/.
    #[arg(long, env = "MINIGRAM_DATA_DIR", default_value = "./data/stage-1")]
    pub data_dir: PathBuf,
    /// SQLite journal: wal (readers and the writer run in parallel) or
    /// delete (rollback journal, several fsyncs per commit).
    #[arg(
        long,
        env = "MINIGRAM_SQLITE_JOURNAL",
        value_enum,
        default_value = "wal"
    )]
    pub journal_mode: JournalMode,
    /// SQLite synchronous level: full (survives power loss), normal (WAL:
    /// survives an app crash, may lose the last commits on power loss), off.
    #[arg(
        long,
        env = "MINIGRAM_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub synchronous: Synchronous,
    /// How long a SQLite connection waits for a lock before answering 503.
    #[arg(long, env = "MINIGRAM_SQLITE_BUSY_TIMEOUT_MS", default_value_t = 5000)]
    pub busy_timeout_ms: u64,
    /// Read connections (concurrent reads) at most.
    #[arg(long, env = "MINIGRAM_SQLITE_READERS", default_value_t = 8)]
    pub readers: usize,
    /// Group commit: the writer commits every write waiting (up to
    /// --group-commit-max) in one transaction and one fsync; off: each
    /// write commits alone.
    #[arg(long, env = "MINIGRAM_GROUP_COMMIT", value_enum, default_value = "on")]
    pub group_commit: Toggle,
    /// Writes in one group commit at most.
    #[arg(long, env = "MINIGRAM_GROUP_COMMIT_MAX", default_value_t = GroupCommit::DEFAULT.max_batch)]
    pub group_commit_max: usize,
    /// How long the writer waits for more writes to join a group that is
    /// not full, in microseconds (0: it takes what is queued).
    #[arg(long, env = "MINIGRAM_GROUP_COMMIT_WAIT_US", default_value_t = 0)]
    pub group_commit_wait_us: u64,
}

impl StorageArgs {
    pub fn config(&self) -> SqliteConfig {
        SqliteConfig {
            path: database_path(&self.data_dir),
            journal_mode: self.journal_mode,
            synchronous: self.synchronous,
            busy_timeout: Duration::from_millis(self.busy_timeout_ms),
            max_readers: self.readers,
            group_commit: match self.group_commit {
                Toggle::Off => GroupCommit::OFF,
                Toggle::On => GroupCommit {
                    max_batch: self.group_commit_max.max(1),
                    wait: Duration::from_micros(self.group_commit_wait_us),
                },
            },
        }
    }

    pub fn open(&self) -> anyhow::Result<SqliteStore> {
        let store = SqliteStore::open(self.config())?;
        std::fs::create_dir_all(uploads_dir(&self.data_dir))
            .with_context(|| format!("cannot create {}", uploads_dir(&self.data_dir).display()))?;
        Ok(store)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Seed(args)) => seed_command(args).await,
        Some(Command::Check(storage)) => {
            let store = storage.open()?;
            let name = database_path(&storage.data_dir).display().to_string();
            minigram::cli::check_store(&store, &uploads_dir(&storage.data_dir), &name).await
        }
        Some(Command::CommitRate(args)) => {
            let store = args.storage.open()?;
            let rate =
                tokio::task::spawn_blocking(move || crate::probe::commit_rate(&store, args.secs))
                    .await??;
            println!("{}", rate.json());
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = args.storage.open()?;
    store.set_feed_index(args.feed_index == Toggle::On)?;
    let describe = format!(
        "data: {}, journal {:?}, synchronous {:?}, group commit {:?} (at most {}), feed index {:?}",
        args.storage.data_dir.display(),
        args.storage.journal_mode,
        args.storage.synchronous,
        args.storage.group_commit,
        args.storage.group_commit_max,
        args.feed_index
    );
    let uploads = uploads_dir(&args.storage.data_dir);
    minigram::cli::serve(
        "stage-1",
        store,
        uploads,
        &args.listen,
        &args.app,
        args.app.image_pool()?,
        &describe,
    )
    .await
}

async fn seed_command(args: SeedCommand) -> anyhow::Result<()> {
    let store = args.storage.open()?;
    let data_dir = &args.storage.data_dir;
    minigram::cli::seed_into(
        &store,
        &uploads_dir(data_dir),
        &args.seed,
        &data_dir.display().to_string(),
    )
    .await?;
    eprintln!(
        "wrote {} and {}",
        database_path(data_dir).display(),
        uploads_dir(data_dir).display()
    );
    Ok(())
}
