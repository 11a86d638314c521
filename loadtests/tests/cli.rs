//! Bad input to the tool: one clear line, a non-zero exit, no panic, and no
//! result file that could pass for a complete one.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_loadtests");

fn run(args: &[&str]) -> (bool, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result.json");
    let o = Command::new(BIN)
        .args(args)
        .arg("--json-out")
        .arg(&out)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        out,
        dir,
    )
}

fn assert_clean_failure(args: &[&str], expect: &str) {
    let (ok, err, out, _dir) = run(args);
    assert!(!ok, "{args:?} should fail");
    assert!(err.contains(expect), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!out.exists(), "no result file for a failed run");
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn unreachable_host() {
    let host = format!("http://127.0.0.1:{}", closed_port());
    assert_clean_failure(&["smoke", "--host", &host], "cannot reach");
}

#[test]
fn host_that_is_not_minigram() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello");
        }
    });
    assert_clean_failure(
        &["smoke", "--host", &host],
        "not JSON: is this a Minigram server?",
    );
}

#[test]
fn bad_slo_and_bad_numbers() {
    let host = format!("http://127.0.0.1:{}", closed_port());
    assert_clean_failure(
        &["smoke", "--host", &host, "--slo", "p95=fast"],
        "bad --slo",
    );
    assert_clean_failure(
        &["breaking", "--host", &host, "--max-users", "0"],
        "--max-users must be at least 1",
    );
    assert_clean_failure(
        &["load", "--host", &host, "--users", "0"],
        "--users must be at least 1",
    );
    assert_clean_failure(
        &["smoke", "--host", "127.0.0.1:8080"],
        "must start with http://",
    );
}

#[test]
fn help_has_examples() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("Examples:") && text.contains("breaking"),
        "{text}"
    );
}
