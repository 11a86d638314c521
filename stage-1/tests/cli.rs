//! The `stage-1` binary as a new user runs it: first start seeds the demo
//! dataset and prints the login; `seed` fills a new data directory and
//! refuses a used one with a one-line error.

use contract::load::Process;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_stage-1");

/// Starts `stage-1` on a free port; it is killed when dropped.
fn start(data_dir: &Path) -> Process {
    let dir = data_dir.to_str().expect("UTF-8 temp path");
    Process::start(
        Path::new(BIN),
        &["--listen", "127.0.0.1:0", "--data-dir", dir],
    )
}

/// First start on an empty directory: demo data, and the demo login works.
#[tokio::test]
async fn first_start_seeds_demo_data_and_the_demo_login_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let url = &server.url;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{url}/api/login"))
        .json(&serde_json::json!({"username": "user1", "password": minigram::seed::SEED_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token = res.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let feed: serde_json::Value = client
        .get(format!("{url}/api/feed"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !feed["photos"].as_array().unwrap().is_empty(),
        "the demo feed has photos"
    );
    drop(server);
    assert!(dir.path().join("minigram.sqlite3").exists());
}

/// `seed` makes the dataset it was asked for, and refuses to seed twice.
#[test]
fn seed_fills_a_new_directory_and_refuses_a_used_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(BIN)
            .args([
                "seed",
                "--users",
                "40",
                "--photos",
                "300",
                "--follows-per-user",
                "5",
                "--likes",
                "500",
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let first = run();
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    assert!(
        err.contains("seeded 40 users, 300 photos, 200 follows, 500 likes"),
        "{err}"
    );
    let conn = rusqlite::Connection::open(dir.path().join("minigram.sqlite3")).unwrap();
    let (likes, sum): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM likes), (SELECT SUM(like_count) FROM photos)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((likes, sum), (500, 500), "like counts match like rows");

    let second = run();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("already has users"), "{err}");
}

/// `--help` has examples; a bad flag value is a one-line error, no panic.
#[test]
fn help_and_bad_flags() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    assert!(
        text.contains("Examples:") && text.contains("--journal-mode"),
        "{text}"
    );
    let bad = Command::new(BIN)
        .args(["--journal-mode", "sideways"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("invalid value 'sideways'") && !err.contains("panicked"),
        "{err}"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let busy = Command::new(BIN)
        .args(["--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!busy.status.success());
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(
        err.contains("cannot listen on") && !err.contains("panicked"),
        "{err}"
    );
}

/// `--feed-index off` drops the feed index (the index-impact experiment's
/// one change) and the feed still answers the same photos, newest first;
/// `--feed-index on` brings the index back.
#[tokio::test]
async fn feed_index_off_drops_the_index_and_on_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    let has_index = || {
        let conn = rusqlite::Connection::open(dir.path().join("minigram.sqlite3")).unwrap();
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'photos_by_user'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    };
    let feed = |url: String| async move {
        let client = reqwest::Client::new();
        let login: serde_json::Value = client
            .post(format!("{url}/api/login"))
            .json(&serde_json::json!({"username": "user1", "password": minigram::seed::SEED_PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page: serde_json::Value = client
            .get(format!("{url}/api/feed"))
            .bearer_auth(login["token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["photos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let on = Process::start(
        Path::new(BIN),
        &["--listen", "127.0.0.1:0", "--data-dir", &path],
    );
    let with_index = feed(on.url.clone()).await;
    drop(on);
    assert!(has_index());
    assert!(!with_index.is_empty());
    let off = Process::start(
        Path::new(BIN),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &path,
            "--feed-index",
            "off",
        ],
    );
    let without = feed(off.url.clone()).await;
    drop(off);
    assert!(!has_index(), "--feed-index off dropped the index");
    assert_eq!(with_index, without, "same feed either way");
    let again = Process::start(
        Path::new(BIN),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &path,
            "--feed-index",
            "on",
        ],
    );
    drop(again);
    assert!(has_index(), "--feed-index on recreated it");
}
