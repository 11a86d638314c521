//! Two `stage-2` processes on two ports over one Postgres database, one
//! Redis prefix and one uploads directory: a user can hop between them, as
//! behind a load balancer.

mod common;

use contract::load::Process;
use contract::{Backend, photo_form, png};
use serde_json::Value;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_stage-2");

/// Starts a `stage-2` on a free port; it is killed when dropped.
fn start(config: &stage_2::Stage2Config, data_dir: &Path) -> Process {
    let flags = common::storage_flags(config, data_dir);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Process::on_free_port(Path::new(BIN), &flags)
}

/// Register on one process, use the token on the other, log out on the
/// other: the first refuses it. An upload on one is served by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_works_on_every_process() {
    let (config, name) = common::fresh_config();
    let db = common::Pg::with_config(config.clone(), name).await;
    let data = db.uploads_dir().parent().unwrap().to_owned();
    let a = start(&config, &data);
    let b = start(&config, &data);
    assert_ne!(a.url, b.url);
    let client = reqwest::Client::new();

    let token = contract::register_at(&client, &a.url, "hopper").await.token;

    let me: Value = client
        .get(format!("{}/api/me", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "hopper", "a token from A works on B");

    let photo: Value = client
        .post(format!("{}/api/photos", a.url))
        .bearer_auth(&token)
        .multipart(photo_form(png(20, 20), "p.png", "shared"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let img = client
        .get(format!("{}{}", b.url, photo["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        img.status(),
        200,
        "B serves A's upload from the shared directory"
    );
    let feed: Value = client
        .get(format!("{}/api/feed", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        feed["photos"][0]["id"], photo["id"],
        "B's feed has the photo posted on A"
    );

    let out = client
        .post(format!("{}/api/logout", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let refused = client
        .get(format!("{}/api/me", a.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a logout on B is seen by A");
}

/// `stage-2 drop-data` (what the lab runs when a run ends) refuses without
/// `--yes` and leaves everything; with it, the database and every key under
/// the prefix are gone, and keys of another prefix stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_data_removes_a_runs_database_and_keys() {
    use sqlx::migrate::MigrateDatabase;
    let (config, name) = common::fresh_config();
    let db = common::Pg::with_config(config.clone(), name).await;
    let data = db.uploads_dir().parent().unwrap().to_owned();
    let server = start(&config, &data);
    contract::register_at(&reqwest::Client::new(), &server.url, "leaver").await;
    drop(server);
    let redis = redis::Client::open(config.redis_url.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let other = format!("{}x:kept", config.redis_prefix);
    let _: () = redis::cmd("SET")
        .arg(&other)
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let keys = |conn: &mut redis::aio::MultiplexedConnection, pattern: String| {
        let mut conn = conn.clone();
        async move {
            let found: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut conn)
                .await
                .unwrap();
            found.len()
        }
    };
    let ours = format!("{}:*", config.redis_prefix);
    assert!(
        keys(&mut conn, ours.clone()).await > 0,
        "the sign-up made keys"
    );

    let flags = common::storage_flags(&config, &data);
    let refused = std::process::Command::new(BIN)
        .arg("drop-data")
        .args(&flags)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "no --yes, no drop");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert!(
        sqlx::Postgres::database_exists(&config.database_url)
            .await
            .unwrap()
    );

    let dropped = std::process::Command::new(BIN)
        .arg("drop-data")
        .args(&flags)
        .arg("--yes")
        .output()
        .unwrap();
    assert!(
        dropped.status.success(),
        "{}",
        String::from_utf8_lossy(&dropped.stderr)
    );
    assert!(
        !sqlx::Postgres::database_exists(&config.database_url)
            .await
            .unwrap()
    );
    assert_eq!(keys(&mut conn, ours).await, 0);
    assert_eq!(
        keys(&mut conn, other.clone()).await,
        1,
        "another prefix is kept"
    );
    let _: () = redis::cmd("DEL")
        .arg(&other)
        .query_async(&mut conn)
        .await
        .unwrap();
}
