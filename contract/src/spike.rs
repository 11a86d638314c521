//! The spike test both stages run: `loadtests spike` from a small baseline
//! to 2,000 users with no think time (far past either stage's breaking
//! point), against the stage with its default limits. The process must
//! stay up with bounded memory, shed with fast 503s, and be back to its
//! baseline p95 within seconds.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

use super::crash::loadtests_bin;
use super::load::Process;

/// The memory bound the spike test holds a stage to (resident set, MiB).
pub const RSS_BOUND_MIB: f64 = 512.0;
/// The slowest a shed answer may be, measured by the server, on a machine
/// whose 2 cores are saturated by the spike and its generator. Refusals at
/// admission and at a full queue (hashing, the pools) are answered at once;
/// the slowest 503 is a sign-in that waited its allowed
/// [`MAX_HASH_WAIT`](minigram::auth::MAX_HASH_WAIT) for a hash and then found
/// storage's queue full, so the bound is that wait plus one second.
pub const SLOWEST_SHED_BOUND_MS: f64 = minigram::auth::MAX_HASH_WAIT.as_millis() as f64 + 1000.0;

/// Runs the spike against `stage_bin` started with `storage` flags and
/// returns the run's summary (`shedInSpike`, `slowestShedMs`,
/// `peakRssMib`, `recoveredWithinSecs`...), after checking it.
pub fn spike_test(stage_bin: &Path, storage: &[&str]) -> Value {
    let _turn = super::load::one_load_at_a_time();
    let loadtests = loadtests_bin(stage_bin);
    let server = Process::on_free_port(stage_bin, storage);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("spike.json");
    let run = Command::new(&loadtests)
        .args(["spike", "--host", &server.url, "--think-ms", "0-0"])
        .args(["--users", "8", "--spike-users", "2000", "--step-secs", "6"])
        .arg("--json-out")
        .arg(&out)
        .output()
        .expect("run loadtests spike");
    assert!(
        run.status.success(),
        "loadtests spike failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("spike result")).unwrap();
    let summary = result["summary"].clone();
    eprintln!("spike summary: {summary}");

    assert_eq!(health_status(&server.url), "200", "alive after the spike");
    assert_eq!(summary["serverUpAfterSpike"], true, "{summary}");
    let shed = summary["shedInSpike"].as_u64().unwrap_or(0);
    assert!(
        shed > 0,
        "2,000 users with no think time must be shed: {summary}"
    );
    let rss = summary["peakRssMib"].as_f64().unwrap_or(f64::MAX);
    assert!(
        rss > 0.0 && rss < RSS_BOUND_MIB,
        "peak RSS {rss} MiB: {summary}"
    );
    let slowest = summary["slowestShedMs"].as_f64().unwrap_or(f64::MAX);
    assert!(
        slowest < SLOWEST_SHED_BOUND_MS,
        "slowest shed {slowest} ms: {summary}"
    );
    assert!(
        summary["recoveredWithinSecs"].as_u64().is_some(),
        "p95 back to baseline within 30 s: {summary}"
    );
    summary
}

/// The status of `GET /health`, over a plain socket (this runs outside any
/// async runtime).
fn health_status(url: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect after the spike");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .unwrap_or("none")
        .to_owned()
}
