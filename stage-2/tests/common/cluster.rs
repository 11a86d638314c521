//! Private Postgres clusters for the stage-2 tests that stop, kill or
//! replicate their database: a primary (`initdb`) and streaming replicas
//! of it (`pg_basebackup -R`), each in a temporary directory on a free
//! port, stopped when dropped. Nothing here touches the shared server.
//!
//! Needs PostgreSQL's server binaries (Debian package postgresql); fails,
//! never skips, without them. Included by the tests that use it
//! (`#[path = "common/cluster.rs"] mod cluster;`).

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private Postgres cluster in a temporary directory, stopped on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries not found under /usr/lib/postgresql: install the postgresql package");
    let mut bins: Vec<PathBuf> = versions
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    bins.sort();
    bins.pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin")
}

/// A temporary directory the `postgres` account may write (when we are
/// root, the server runs as that account).
fn owned_temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("minigram-pg-")
        .tempdir()
        .unwrap();
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir.path())
        .status();
    dir
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (the
/// server refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    pub fn init() -> Self {
        let bin = pg_bin();
        let dir = owned_temp_dir();
        let data = dir.path().join("data");
        let out = as_postgres(&bin.join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Self {
            bin,
            dir,
            port: free_port(),
        };
        pg.start();
        pg
    }

    /// A streaming replica of `primary` (`pg_basebackup -R`: a copy of its
    /// data plus the settings to follow it), started and replaying.
    pub fn replica_of(primary: &Postgres) -> Self {
        let dir = owned_temp_dir();
        let out = as_postgres(&primary.bin.join("pg_basebackup"))
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
            .arg(dir.path().join("data"))
            .output()
            .expect("pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let replica = Self {
            bin: primary.bin.clone(),
            dir,
            port: free_port(),
        };
        replica.start();
        replica
    }

    fn ctl(&self, args: &[&str]) {
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(args)
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.ctl(&["-w", "-o", &opts, "-l", log.to_str().unwrap(), "start"]);
    }

    pub fn stop_immediately(&self) {
        self.ctl(&["-w", "-m", "immediate", "stop"]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/minigram", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
