//! Command-line pieces both stages share: app flags and logging.

use std::path::PathBuf;

use crate::app::Settings;
use crate::auth::Hasher;

/// Flags of the app itself (the same for both stages).
#[derive(Debug, Clone, clap::Args)]
pub struct AppArgs {
    /// Largest accepted upload, in bytes (checked while the body streams in).
    #[arg(long, env = "MINIGRAM_MAX_UPLOAD_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Password hashes that may run at once (default: one per core).
    #[arg(long, env = "MINIGRAM_HASH_CONCURRENCY")]
    pub hash_concurrency: Option<usize>,
    /// Argon2id parameters of new password hashes (memory KiB, passes,
    /// lanes); the default is OWASP's m=19456,t=2,p=1. A stored hash keeps
    /// its own parameters.
    #[arg(long, env = "MINIGRAM_ARGON2", default_value = "m=19456,t=2,p=1")]
    pub argon2: crate::auth::PasswordCost,
    /// Sign-ins that may wait for a hashing slot before new ones get a 503.
    #[arg(long, env = "MINIGRAM_HASH_QUEUE", default_value_t = 256)]
    pub hash_queue: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "MINIGRAM_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Mark the session cookie Secure (set when serving over TLS).
    #[arg(long, env = "MINIGRAM_COOKIE_SECURE")]
    pub cookie_secure: bool,
    /// Requests that may be in progress at once; past that a request is
    /// answered 503 `overloaded` with Retry-After at once.
    #[arg(long, env = "MINIGRAM_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,
    /// Seconds a request may take before it is answered 503 `timeout`.
    #[arg(long, env = "MINIGRAM_REQUEST_TIMEOUT_SECS", default_value_t = 15)]
    pub request_timeout_secs: u64,
    /// Failed sign-ins per username before it gets 429 for the rest of the
    /// window (0: no throttling).
    #[arg(long, env = "MINIGRAM_LOGIN_MAX_FAILURES", default_value_t = 10)]
    pub login_max_failures: u32,
    /// Seconds of the window failed sign-ins are counted in.
    #[arg(long, env = "MINIGRAM_LOGIN_WINDOW_SECS", default_value_t = 300)]
    pub login_window_secs: u64,
    /// Request metrics and the live page (`off` only to measure their cost).
    #[arg(long, env = "MINIGRAM_METRICS", value_enum, default_value = "on")]
    pub metrics: Toggle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Toggle {
    On,
    Off,
}

impl AppArgs {
    pub fn settings(&self, stage: &'static str) -> Settings {
        Settings {
            max_upload_bytes: self.max_upload_bytes,
            cookie_secure: self.cookie_secure,
            stage,
            metrics: self.metrics == Toggle::On,
            limits: crate::admission::Limits {
                max_in_flight: self.max_in_flight,
                request_timeout: std::time::Duration::from_secs(self.request_timeout_secs.max(1)),
            },
            login_throttle: crate::auth::Throttle {
                max_failures: self.login_max_failures,
                window: std::time::Duration::from_secs(self.login_window_secs.max(1)),
            },
        }
    }

    pub fn hasher(&self) -> anyhow::Result<Hasher> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher::with_cost(
            self.hash_concurrency.unwrap_or(cores),
            self.hash_queue,
            self.argon2,
        )
    }
}

/// Where a stage keeps uploads under its data directory.
pub fn uploads_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("uploads")
}

/// Human-readable logs on stderr; `RUST_LOG` overrides the level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Serves `store` until stopped: loads the demo dataset into an empty
/// storage first, then prints where it listens and the demo login.
/// `stage` is e.g. "stage-1"; `describe` says how its storage is set up.
pub async fn serve<S: crate::Store>(
    stage: &'static str,
    store: S,
    uploads: PathBuf,
    listen: &str,
    args: &AppArgs,
    describe: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&uploads)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", uploads.display()))?;
    if store.is_empty().await.map_err(|e| anyhow::anyhow!("{e}"))? {
        eprintln!("empty database: loading the demo dataset");
        if let Err(e) = crate::seed::run(&store, &uploads, &crate::seed::SeedArgs::DEMO).await {
            // Several stage-2 processes may start on one empty database at
            // once: the one that lost the race finds it seeded, and goes on.
            if store.is_empty().await.unwrap_or(true) {
                return Err(e);
            }
            eprintln!("another process loaded the demo dataset first");
        }
    }
    let app = crate::App {
        store,
        hasher: args.hasher()?,
        uploads_dir: uploads,
        settings: args.settings(stage),
    };
    let server = crate::Application::build(app, listen, args.workers)?;
    let url = format!("http://{}", local_address(listen, server.port()));
    eprintln!(
        "Minigram {} on {url}  ({describe})",
        stage.replace('-', " ")
    );
    eprintln!("  live metrics: {url}/metrics.html");
    eprintln!(
        "  demo login: {}   API docs: {url}/api/openapi.json",
        crate::seed::demo_login()
    );
    server.run_until_stopped().await?;
    Ok(())
}

/// `seed`: refuses a storage that already has users, then loads a dataset.
pub async fn seed_into<S: crate::Store>(
    store: &S,
    uploads: &std::path::Path,
    args: &crate::seed::SeedArgs,
    storage: &str,
) -> anyhow::Result<()> {
    if !store.is_empty().await.map_err(|e| anyhow::anyhow!("{e}"))? {
        anyhow::bail!("{storage} already has users: seed into new, empty storage (or delete it)");
    }
    crate::seed::run(store, uploads, args).await?;
    Ok(())
}

/// `check`: is the stored data consistent (after a crash, say)? Prints the
/// counts and every problem, including photo rows whose image file is
/// missing; fails if there is any.
pub async fn check_store<S: crate::Store>(
    store: &S,
    uploads: &std::path::Path,
    storage: &str,
) -> anyhow::Result<()> {
    let mut report = store
        .integrity()
        .await
        .map_err(|e| anyhow::anyhow!("cannot check {storage}: {e}"))?;
    let missing = report
        .files
        .iter()
        .filter(|f| !uploads.join(f).is_file())
        .count();
    if missing > 0 {
        report.problems.push(format!(
            "{missing} image files that photo rows point to are missing from {}",
            uploads.display()
        ));
    }
    println!(
        "{storage}: {} users, {} photos ({} image files), {} likes, {} follows",
        report.users,
        report.photos,
        report.files.len(),
        report.likes,
        report.follows
    );
    for p in &report.problems {
        println!("PROBLEM: {p}");
    }
    anyhow::ensure!(
        report.problems.is_empty(),
        "{} consistency problems in {storage}",
        report.problems.len()
    );
    println!("consistent: like counters match like rows, every photo has its image file");
    Ok(())
}

/// The address to print for `listen` once bound to `port` (a wildcard
/// host is shown as 127.0.0.1).
pub fn local_address(listen: &str, port: u16) -> String {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = if host == "0.0.0.0" || host.is_empty() {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{port}")
}
