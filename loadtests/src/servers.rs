//! The servers a topology run starts for itself, each inside its host: a
//! Postgres cluster of its own (initdb into a temporary directory, its own
//! port) and its streaming read replicas (`pg_basebackup -R`), a Redis of
//! its own, and the links between tiers (`link.rs`).
//!
//! Nothing here touches the machine's shared Postgres or Redis, and
//! everything is removed when its guard drops: the cluster is stopped
//! (`pg_ctl stop -m immediate`) and its directory deleted, Redis and the
//! links are killed.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::hosts::Host;

/// A port nobody listens on now (bound, read and released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Spawns `cmd`, places it in `host`, copies its output lines to `log`
/// and waits (up to 120 s) until one contains `ready`, then returns that
/// line. The lab starts its stage processes this way too.
pub fn start(
    mut cmd: Command,
    what: &str,
    host: Option<&Host>,
    log: &Path,
    ready: &'static str,
) -> anyhow::Result<(Child, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    if let Some(h) = host {
        h.place(child.id())?;
    }
    let (tx, rx) = mpsc::channel();
    let file = std::sync::Arc::new(std::sync::Mutex::new(std::fs::File::create(log)?));
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let (tx, file) = (tx.clone(), std::sync::Arc::clone(&file));
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
                if line.contains(ready) {
                    let _ = tx.send(line);
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            return Ok((child, line));
        }
        if let Some(status) = child.try_wait()? {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "{what} exited ({status}) before it was ready: {}",
                said.lines().last().unwrap_or("no output")
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{what} was not ready within 120 s (log: {})", log.display());
        }
    }
}

/// The uid and gid of a system account, from /etc/passwd.
fn account(name: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
}

/// The newest PostgreSQL server binaries installed (`…/bin` holding
/// `initdb` and `postgres`).
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    match dirs.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "a topology run starts its own Postgres and needs its server binaries (initdb, postgres under /usr/lib/postgresql/N/bin): apt-get install postgresql"
        ),
    }
}

/// A Postgres cluster of the run's own, in its host.
pub struct OwnPostgres {
    child: Child,
    bin: PathBuf,
    data: PathBuf,
    user: Option<(u32, u32)>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl OwnPostgres {
    /// A new primary (`initdb`) in `host`.
    pub fn start(host: &Host, logs: &Path) -> anyhow::Result<Self> {
        let empty = Empty::new()?;
        let mut initdb = Command::new(empty.bin.join("initdb"));
        initdb
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(empty.data());
        empty.as_user(&mut initdb);
        let out = initdb.output().context("cannot run initdb")?;
        anyhow::ensure!(
            out.status.success(),
            "initdb failed: {}",
            last_line(&out.stderr)
        );
        empty.serve(host, &logs.join("postgres.log"))
    }

    /// A streaming replica of `primary` in `host`: a copy of its data
    /// (`pg_basebackup -R`, which also writes the settings to follow it),
    /// started read-only and replaying what the primary writes next.
    pub fn replica_of(
        primary: &OwnPostgres,
        host: &Host,
        logs: &Path,
        name: &str,
    ) -> anyhow::Result<Self> {
        let empty = Empty::new()?;
        let mut backup = Command::new(empty.bin.join("pg_basebackup"));
        backup
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "-D",
            ])
            .arg(empty.data());
        empty.as_user(&mut backup);
        let out = backup.output().context("cannot run pg_basebackup")?;
        anyhow::ensure!(
            out.status.success(),
            "pg_basebackup of the lab's Postgres failed: {}",
            last_line(&out.stderr)
        );
        empty.serve(host, &logs.join(format!("{name}.log")))
    }

    /// The server's URL (no database).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// One value from the server (`psql`, which comes with the server
    /// binaries), for the lab's bookkeeping: never on a measured path.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-XAtc", sql])
            .output()
            .context("cannot run psql")?;
        anyhow::ensure!(
            out.status.success(),
            "psql {sql:?}: {}",
            last_line(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// The last line a tool wrote (its error, usually).
fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned()
}

/// A cluster directory not yet served: the binaries, a temporary
/// directory the server's account owns, and that account.
struct Empty {
    bin: PathBuf,
    dir: tempfile::TempDir,
    user: Option<(u32, u32)>,
}

impl Empty {
    fn new() -> anyhow::Result<Self> {
        let bin = postgres_bin()?;
        let dir = tempfile::Builder::new().prefix("minigram-pg-").tempdir()?;
        // Postgres refuses to run as root: as root, the cluster belongs to
        // the `postgres` account.
        let user = if crate::hosts::is_root() {
            let ids = account("postgres").context(
                "running as root, the lab runs its Postgres as the postgres account, which /etc/passwd lacks: apt-get install postgresql",
            )?;
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))?;
            Some(ids)
        } else {
            None
        };
        Ok(Self { bin, dir, user })
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_user(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
    }

    /// Starts the server on the directory's data, on a free port, in
    /// `host`, and waits until it accepts connections (a replica says
    /// "ready to accept read-only connections").
    fn serve(self, host: &Host, log: &Path) -> anyhow::Result<OwnPostgres> {
        let data = self.data();
        let port = free_port()?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=128MB",
                "-c",
                "logging_collector=off",
            ]);
        self.as_user(&mut cmd);
        let (child, _) = start(
            cmd,
            "the lab's Postgres",
            Some(host),
            log,
            "ready to accept",
        )?;
        // Workers it forked before it was placed move to its host too.
        host.place_tree(child.id())?;
        Ok(OwnPostgres {
            child,
            bin: self.bin,
            data,
            user: self.user,
            port,
            _dir: self.dir,
        })
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        use std::os::unix::process::CommandExt;
        let mut stop = Command::new(self.bin.join("pg_ctl"));
        stop.args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.user {
            stop.uid(uid).gid(gid);
        }
        if !stop.status().is_ok_and(|s| s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A process the run started (a stage, Redis, a link) and where it
/// answers: killed and reaped when dropped.
pub struct Owned {
    pub child: Child,
    pub addr: String,
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis of the run's own, in its host, keeping nothing on disk.
pub fn own_redis(host: &Host, logs: &Path) -> anyhow::Result<Owned> {
    let port = free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
    ])
    .arg(logs);
    let (child, _) = start(
        cmd,
        "the lab's Redis (redis-server; apt-get install redis-server)",
        Some(host),
        &logs.join("redis.log"),
        "Ready to accept connections",
    )?;
    Ok(Owned {
        child,
        addr: format!("127.0.0.1:{port}"),
    })
}

/// A link (`loadtests link`) to `to` with `rtt_ms`, in `host`.
pub fn link(to: &str, rtt_ms: f64, host: &Host, logs: &Path, name: &str) -> anyhow::Result<Owned> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["link", "--to", to, "--rtt-ms", &rtt_ms.to_string()]);
    let (child, line) = start(
        cmd,
        "a link (loadtests link)",
        Some(host),
        &logs.join(format!("link-{name}.log")),
        "link on ",
    )?;
    let addr = line
        .split("link on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    Ok(Owned { child, addr })
}
