//! The crash test both stages run: write-heavy user journeys with an
//! `--ack-log`, a SIGKILL of the server in the middle of them, a restart on
//! the same storage, then `loadtests verify` (every acknowledged write is
//! there) and the stage's `check` (counters match rows, no dangling rows,
//! every photo has its file).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::load::Process;

/// What the crash test saw.
#[derive(Debug)]
pub struct CrashReport {
    /// Acknowledged writes in the log when the server was killed.
    pub acked_at_kill: usize,
    /// Acknowledged writes in the log in all (answers in flight at the kill
    /// may still have arrived).
    pub acked: usize,
    /// Of those, found after the restart.
    pub found: usize,
    /// Stage 1: the most writes one commit held before the kill (its
    /// `minigram_sqlite_largest_commit_writes`), so a test can show group
    /// commit really grouped; `None` for a server without it.
    pub largest_commit: Option<f64>,
    /// What `verify` printed.
    pub verify_output: String,
}

/// The `loadtests` binary next to a stage's binary (the same target dir).
pub fn loadtests_bin(stage_bin: &Path) -> PathBuf {
    let bin = stage_bin.with_file_name("loadtests");
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace; scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Runs the crash test against `stage_bin` started with `storage` flags
/// (the same flags are given to `check`). Panics with the reason on failure.
pub fn crash_during_writes(stage_bin: &Path, storage: &[&str]) -> CrashReport {
    let _turn = super::load::one_load_at_a_time();
    let loadtests = loadtests_bin(stage_bin);
    let dir = tempfile::tempdir().expect("temp dir");
    let acks = dir.path().join("acks.jsonl");
    let server = Process::on_free_port(stage_bin, storage);
    let mut load = Command::new(&loadtests)
        .args([
            "load",
            "--host",
            &server.url,
            "--mix",
            "writes",
            "--think-ms",
            "0-0",
        ])
        .args(["--users", "16", "--duration", "12", "--seeded-users", "12"])
        .arg("--ack-log")
        .arg(&acks)
        .arg("--json-out")
        .arg(dir.path().join("load.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start loadtests");
    // Kill once the load is well under way.
    let started = Instant::now();
    // At least 2.5 s in: the figures in /metrics are sampled each second.
    while (lines(&acks) < 300 || started.elapsed() < Duration::from_millis(2500))
        && started.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let acked_at_kill = lines(&acks);
    let largest_commit = metric(&server.url, "minigram_sqlite_largest_commit_writes");
    drop(server); // SIGKILL: no shutdown, no flush, no goodbye
    let status = load.wait().expect("wait for loadtests");
    eprintln!("crash test: the load run ended with {status}");
    assert!(
        acked_at_kill >= 100,
        "only {acked_at_kill} writes acknowledged in 10 s before the kill"
    );

    let server = Process::on_free_port(stage_bin, storage);
    let out = Command::new(&loadtests)
        .args(["verify", "--host", &server.url])
        .arg("--ack-log")
        .arg(&acks)
        .output()
        .expect("run loadtests verify");
    let verify_output = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{verify_output}{}", String::from_utf8_lossy(&out.stderr));
    let (found, acked) = verify_output
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("verify: ")?;
            let (found, rest) = rest.split_once(" of ")?;
            let acked = rest.split_whitespace().next()?;
            Some((found.parse().ok()?, acked.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no summary from verify: {verify_output}"));
    assert!(out.status.success(), "verify failed:\n{verify_output}");
    drop(server);

    let check = Command::new(stage_bin)
        .arg("check")
        .args(storage)
        .output()
        .expect("run check");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && said.contains("consistent"),
        "check after the crash: {said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    CrashReport {
        acked_at_kill,
        acked,
        found,
        largest_commit,
        verify_output,
    }
}

/// One unlabelled series' value from a server's `/metrics`.
fn metric(url: &str, name: &str) -> Option<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let text = rt.block_on(async {
        reqwest::get(format!("{url}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
