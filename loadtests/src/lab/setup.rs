//! What a lab run starts and removes: the stage binaries, fresh storage per
//! variant (a temporary directory; for stage 2 a new Postgres database and
//! Redis key prefix, dropped afterwards), and SQLite's raw commit rate.

use anyhow::Context;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::LabArgs;
use super::catalogue::Stage;
use crate::fleet::DataAddrs;
use crate::servers::{self, Owned};

pub(super) fn binary(name: &str) -> anyhow::Result<PathBuf> {
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
pub(super) fn start_server(bin: &Path, args: &[String], log: &Path) -> anyhow::Result<Owned> {
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
pub(super) struct Storage {
    pub(super) dir: tempfile::TempDir,
    pub(super) pg: Option<Data>,
}

/// Stage 2's data: a new database and key prefix, on the shared servers
/// (dropped afterwards) or on a topology run's own (removed whole).
pub(super) struct Data {
    pub(super) server: String,
    pub(super) db: String,
    pub(super) redis: String,
    pub(super) prefix: String,
    pub(super) shared: bool,
}

impl Storage {
    /// `own`: a topology run's own Postgres and Redis (direct addresses).
    pub(super) fn new(
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
    pub(super) fn flags(&self) -> Vec<String> {
        self.flags_via(None)
    }

    /// The storage flags of `serve`: `via` the links of a topology run
    /// (and its read replicas, if it has any).
    pub(super) fn flags_via(&self, via: Option<&DataAddrs>) -> Vec<String> {
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
            for replica in via.map_or(&[][..], |v| &v.replicas[..]) {
                f.extend(["--read-replica".into(), format!("{replica}/{}", d.db)]);
            }
        }
        f
    }
}

impl Drop for Storage {
    /// A run on the shared servers leaves nothing behind: its database and
    /// its Redis keys go through `stage-2 drop-data` (sqlx and the redis
    /// crate, no shell). A topology run's own servers are removed whole.
    fn drop(&mut self) {
        let Some(d @ Data { shared: true, .. }) = &self.pg else {
            return;
        };
        let dropped = binary("stage-2").and_then(|bin| {
            let out = Command::new(bin)
                .arg("drop-data")
                .args(["--database-url", &format!("{}/{}", d.server, d.db)])
                .args(["--redis-url", &d.redis, "--redis-prefix", &d.prefix])
                .arg("--yes")
                .stdout(Stdio::null())
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(())
        });
        if let Err(e) = dropped {
            eprintln!(
                "lab: could not remove the database {} and the keys {}:* ({e:#}): remove them by hand",
                d.db, d.prefix
            );
        }
    }
}

/// The flags of a variant that `seed` must get too: the Argon2 parameters
/// (the seeded accounts' hash is what a sign-in verifies against).
pub(super) fn seed_flags(flags: &[&str]) -> Vec<String> {
    flags
        .windows(2)
        .filter(|w| w[0] == "--argon2")
        .flat_map(|w| [w[0].to_owned(), w[1].to_owned()])
        .collect()
}

/// Fails with one clear line when a stage-2 variant's server is missing.
pub(super) fn check_reachable(what: &str, url: &str, default_port: u16) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).with_context(|| format!("{what}: not a URL: {url}"))?;
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let addr = format!("{host}:{}", parsed.port().unwrap_or(default_port));
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

/// SQLite's raw commit rate on this machine's disk, per journal mode (WAL
/// and the rollback journal, both synchronous FULL), measured by
/// `stage-1 commit-rate` in a fresh temporary database each.
pub(super) fn sqlite_commit_rate() -> anyhow::Result<Value> {
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
