//! Command-line pieces both stages share: app flags and logging.

use anyhow::Context;
use std::path::PathBuf;

use crate::app::Settings;
use crate::auth::Hasher;
use crate::image_pool::ImagePool;

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
    /// Images decoded at once (default: one per core). Each decode holds
    /// at most 128 MiB, so this bounds image memory.
    #[arg(long, env = "MINIGRAM_IMAGE_THREADS")]
    pub image_threads: Option<usize>,
    /// Uploads that may wait for an image thread before new ones get a 503.
    /// (Their bytes are request bodies, bounded by --body-memory-mib.)
    #[arg(long, env = "MINIGRAM_IMAGE_QUEUE", default_value_t = 64)]
    pub image_queue: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "MINIGRAM_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Load the demo dataset (accounts with the documented password) into
    /// empty storage even when listening on a non-loopback address; on
    /// loopback it is loaded without this.
    #[arg(long, env = "MINIGRAM_DEMO")]
    pub demo: bool,
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
    /// Seconds a request body may take to arrive in full (after its
    /// headers); a slower one gets 408 `body_timeout`. Bodies are read
    /// before a request takes a slot, so keep this below the request timeout.
    #[arg(long, env = "MINIGRAM_BODY_TIMEOUT_SECS", default_value_t = 10)]
    pub body_timeout_secs: u64,
    /// MiB of request bodies the process holds at once; a body that would
    /// exceed it gets 503 `overloaded` at once.
    #[arg(long, env = "MINIGRAM_BODY_MEMORY_MIB", default_value_t = 64)]
    pub body_memory_mib: usize,
    /// Failed sign-ins per username before it gets 429 for the rest of the
    /// window (0: no throttling).
    #[arg(long, env = "MINIGRAM_LOGIN_MAX_FAILURES", default_value_t = 10)]
    pub login_max_failures: u32,
    /// Failed sign-ins from one client address (any usernames) before it
    /// gets 429 for the rest of the window (0: no per-address limit).
    #[arg(
        long,
        env = "MINIGRAM_LOGIN_MAX_FAILURES_PER_CLIENT",
        default_value_t = 100
    )]
    pub login_max_failures_per_client: u32,
    /// Take the client's address for the sign-in throttle from the last
    /// entry of X-Forwarded-For: only behind a proxy that sets it.
    #[arg(long, env = "MINIGRAM_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Seconds between two purges of expired sessions.
    #[arg(long, env = "MINIGRAM_SESSION_PURGE_SECS", default_value_t = 60)]
    pub session_purge_secs: u64,
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
            bodies: crate::body::BodyLimits {
                deadline: std::time::Duration::from_secs(self.body_timeout_secs.max(1)),
                memory: self.body_memory_mib.max(1) * 1024 * 1024,
            },
            trust_forwarded_for: self.trust_forwarded_for,
            session_purge_every: std::time::Duration::from_secs(self.session_purge_secs.max(1)),
            login_throttle: crate::auth::Throttle {
                max_failures: self.login_max_failures,
                max_failures_per_client: self.login_max_failures_per_client,
                window: std::time::Duration::from_secs(self.login_window_secs.max(1)),
            },
        }
    }

    /// The image pool (one per process: stage 2's photo worker shares it).
    pub fn image_pool(&self) -> anyhow::Result<ImagePool> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        ImagePool::new(self.image_threads.unwrap_or(cores), self.image_queue)
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
/// storage first (only on a loopback address, or with `--demo`: its
/// accounts share a documented password), then prints where it listens.
/// `stage` is e.g. "stage-1"; `describe` says how its storage is set up.
pub async fn serve<S: crate::Store>(
    stage: &'static str,
    store: S,
    uploads: PathBuf,
    listen: &str,
    args: &AppArgs,
    images: ImagePool,
    describe: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&uploads)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", uploads.display()))?;
    let swept = crate::images::sweep_temporary_files(&uploads);
    if swept > 0 {
        eprintln!("removed {swept} temporary upload files left by an earlier run");
    }
    let demo = args.demo || is_loopback(listen);
    let empty = store.is_empty().await.context("reading the store")?;
    if empty && demo {
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
        images,
        uploads_dir: uploads,
        settings: args.settings(stage),
    };
    let server = crate::Application::build(app, listen, args.workers)?;
    let url = format!("http://{}", local_address(listen, server.port()));
    eprintln!(
        "Minigram {} on {url}  ({describe})",
        stage.replace('-', " ")
    );
    eprintln!("  live metrics: {url}/metrics.html   API docs: {url}/api/openapi.json");
    if demo {
        eprintln!("  demo login: {}", crate::seed::demo_login());
    } else if empty {
        eprintln!(
            "  empty storage, no demo data: {listen} is not a loopback address, and demo accounts \
             share a published password. Register, or `{stage} seed --help`, or start with --demo"
        );
    }
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
    if !store.is_empty().await.context("reading the store")? {
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
        .with_context(|| format!("cannot check {storage}"))?;
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

/// Is `listen` an address only this machine can reach (127.0.0.0/8, ::1,
/// or a name that resolves only to those)?
pub fn is_loopback(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_listeners_get_demo_data_by_default() {
        for listen in [
            "127.0.0.1:8080",
            "127.0.0.2:0",
            "[::1]:8080",
            "localhost:8080",
        ] {
            assert!(is_loopback(listen), "{listen}");
        }
        for listen in ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:80", "not an address"] {
            assert!(!is_loopback(listen), "{listen}");
        }
    }
}
