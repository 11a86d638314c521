//! Stage 2 with read replicas, on real streaming replication: a primary
//! cluster and replicas of it (`pg_basebackup -R`) of the test's own, on
//! free ports, removed afterwards.
//!
//! - A writer reads their own write at once through reads that go to a
//!   replica, even one whose replay is paused; others read the replica
//!   and may see the write late (here: until replay resumes).
//! - A replica killed under load costs no error (its reads move to the
//!   primary) and comes back into service by itself.
//! - Both contract suites pass with a replica behind every read, and again
//!   with every stage-3 switch on (replica, hybrid timelines, feed cache).
//!
//! Needs PostgreSQL's server binaries and `redis-server`; fails, never
//! skips, without them.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use cluster::Postgres;
use common::figure;
use contract::{Backend, TestApp, TestUser, spawn_app_on};
use minigram::Settings;
use reqwest::StatusCode;
use serde_json::Value;
use stage_2::{Stage2Config, Stage2Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A primary and its replicas of the test's own, and a stage-2 store that
/// reads from them (cache off: the uncached feed is replica-routed too).
struct Replicated {
    store: Stage2Store,
    dir: tempfile::TempDir,
    replicas: Vec<Postgres>,
    /// Kept running for as long as the store uses it.
    _primary: Postgres,
}

impl Replicated {
    async fn start(replicas: usize, tune: impl FnOnce(&mut Stage2Config)) -> Self {
        let (primary, replicas) = tokio::task::spawn_blocking(move || {
            let primary = Postgres::init();
            let replicas = (0..replicas)
                .map(|_| Postgres::replica_of(&primary))
                .collect::<Vec<_>>();
            (primary, replicas)
        })
        .await
        .unwrap();
        let mut config = Stage2Config::new(primary.url(), common::redis_server());
        config.redis_prefix = format!("mgtest:{}", common::unique_name());
        config.pg_pool_size = 4;
        config.feed_cache = false;
        config.read_replicas = replicas.iter().map(Postgres::url).collect();
        tune(&mut config);
        let store = Stage2Store::connect(config).await.expect("connect");
        Self {
            store,
            dir: tempfile::tempdir().unwrap(),
            replicas,
            _primary: primary,
        }
    }
}

impl Drop for Replicated {
    /// The clusters go with their directories; the test's Redis keys are
    /// on the shared server.
    fn drop(&mut self) {
        let prefix = self.store.config().redis_prefix.clone();
        common::clean_up(async move {
            stage_2::cleanup::delete_keys(&common::redis_server(), &prefix).await
        });
    }
}

impl Backend for Replicated {
    type Store = Stage2Store;

    async fn fresh() -> Self {
        Self::start(1, |_| {}).await
    }

    fn store(&self) -> Stage2Store {
        self.store.clone()
    }

    fn uploads_dir(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    async fn count(&self, table: &'static str) -> i64 {
        common::count(&self.store, table).await
    }
}

/// Waits until the poller has put replica `n` (1-based) in service.
async fn in_service(store: &Stage2Store, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while figure(store, &format!("replica{n}.up")) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "replica {n} never came into service"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until replica `n` has replayed everything the primary wrote.
async fn caught_up(store: &Stage2Store, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    // Two polls in a row with no lag: a write just before the first poll
    // is counted as lag by it or replayed before the second.
    let mut quiet = 0;
    while quiet < 2 {
        assert!(Instant::now() < deadline, "replica {n} never caught up");
        tokio::time::sleep(Duration::from_millis(150)).await;
        quiet = if figure(store, &format!("replica{n}.lagBytes")) == 0.0 {
            quiet + 1
        } else {
            0
        };
    }
}

async fn json(app: &TestApp<Replicated>, path: &str, who: &TestUser) -> Value {
    let res = app.get(path, Some(&who.token)).await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.json().await.unwrap()
}

fn replica_conn(app: &TestApp<Replicated>) -> String {
    app.backend.replicas[0].url()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_reads_their_writes_through_a_lagging_replica() {
    // A replica far behind is still read (max lag raised): the test pauses
    // replay for as long as it needs.
    let backend = Replicated::start(1, |c| c.replica_max_lag = Duration::from_secs(600)).await;
    let app = spawn_app_on(backend, Settings::default()).await;
    let writer = app.registered("writer").await;
    let other = app.registered("other").await;
    in_service(&app.store, 1).await;
    caught_up(&app.store, 1).await;

    // Replay stops: the replica keeps answering, from the past.
    let replica = sqlx::PgPool::connect(&replica_conn(&app)).await.unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica)
        .await
        .unwrap();
    let reads_before = figure(&app.store, "replica1.reads");

    // The writer posts a photo and follows the other person.
    let photo = app.posted_photo(&writer, "fresh").await;
    let follow = app
        .send(
            reqwest::Method::POST,
            &format!("/api/users/{}/follow", other.id),
            Some(&writer.token),
        )
        .await;
    assert_eq!(follow.status(), StatusCode::OK);

    // The writer's reads see both at once: their photos, their profile,
    // the photo itself, their feed, the other's profile.
    let mine = json(&app, &format!("/api/users/{}/photos", writer.id), &writer).await;
    assert_eq!(mine["photos"][0]["id"], photo["id"], "own photo list");
    let profile = json(&app, &format!("/api/users/{}", writer.id), &writer).await;
    assert_eq!(profile["photos"], 1, "own profile");
    assert_eq!(profile["following"], 1, "own profile");
    json(&app, &format!("/api/photos/{}", photo["id"]), &writer).await;
    let feed = json(&app, "/api/feed", &writer).await;
    assert_eq!(feed["photos"][0]["id"], photo["id"], "own feed");
    let theirs = json(&app, &format!("/api/users/{}", other.id), &writer).await;
    assert_eq!(theirs["followedByMe"], true, "own follow");
    assert!(
        figure(&app.store, "replicas.behindOwnWrite") >= 5.0,
        "the writer's reads went to the primary because the replica lacked the write"
    );

    // The other person reads the paused replica: the writes are not there
    // yet (this is the staleness others may see, and it proves those reads
    // went to the replica).
    let seen = json(&app, &format!("/api/users/{}", writer.id), &other).await;
    assert_eq!(seen["photos"], 0, "a replica read, from before the writes");
    let page = json(&app, "/api/explore", &other).await;
    assert!(
        page["photos"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["id"] != photo["id"]),
        "explore on the paused replica"
    );
    assert!(figure(&app.store, "replica1.reads") > reads_before);
    // The lag, as the next poll reads it.
    tokio::time::sleep(3 * Stage2Config::REPLICA_POLL).await;
    assert!(
        figure(&app.store, "replica1.lagBytes") > 0.0,
        "lag is shown"
    );
    assert!(figure(&app.store, "replica1.lagMs") > 0.0, "lag is shown");

    // Replay resumes: the others see the writes too, within the lag.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = json(&app, &format!("/api/users/{}", writer.id), &other).await;
        if seen["photos"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_costs_no_error_and_rejoins() {
    let backend = Replicated::start(1, |_| {}).await;
    let app = spawn_app_on(backend, Settings::default()).await;
    let user = app.registered("reader").await;
    app.posted_photo(&user, "something to read").await;
    in_service(&app.store, 1).await;
    caught_up(&app.store, 1).await;

    // Readers in a closed loop over every replica-routed read.
    let stop = Arc::new(AtomicBool::new(false));
    let paths = [
        "/api/explore".to_owned(),
        "/api/feed".to_owned(),
        "/api/me".to_owned(),
        format!("/api/users/{}", user.id),
        format!("/api/users/{}/photos", user.id),
    ];
    let readers: Vec<_> = (0..6)
        .map(|i| {
            let (client, base, token) =
                (app.client.clone(), app.address.clone(), user.token.clone());
            let (stop, paths) = (stop.clone(), paths.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let res = client
                        .get(format!("{base}{}", paths[n % paths.len()]))
                        .bearer_auth(&token)
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    let status = res.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
                    answers.push((status, started.elapsed()));
                }
                answers
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let served_before_kill = figure(&app.store, "replica1.reads");
    assert!(served_before_kill > 0.0, "the replica served the load");
    let backend = &app.backend;
    tokio::task::block_in_place(|| backend.replicas[0].stop_immediately());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        figure(&app.store, "replica1.up"),
        0.0,
        "taken out of service"
    );
    tokio::task::block_in_place(|| backend.replicas[0].start());

    // Back in service by itself, and serving again.
    in_service(&app.store, 1).await;
    let served_after_restart = figure(&app.store, "replica1.reads");
    let deadline = Instant::now() + Duration::from_secs(20);
    while figure(&app.store, "replica1.reads") <= served_after_restart {
        assert!(Instant::now() < deadline, "the replica never served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.unwrap());
    }
    assert!(all.len() > 100, "only {} reads under load", all.len());
    for (status, took) in &all {
        match status {
            Ok(200) => {}
            Ok(s) => panic!("a read answered {s} while a replica died"),
            Err(e) => panic!("a read got no answer while a replica died: {e}"),
        }
        assert!(*took < Duration::from_secs(5), "a read took {took:?}");
    }
    let moved = figure(&app.store, "replicas.retried") + figure(&app.store, "replicas.noneUsable");
    assert!(moved > 0.0, "reads moved to the primary during the outage");
    eprintln!(
        "{} reads, none failed; slowest {:?}; {moved} sent to the primary while the replica was down",
        all.len(),
        all.iter().map(|a| a.1).max().unwrap()
    );
    app.stop().await;
}

/// Both contract suites with a replica behind every read: the same HTTP
/// contract, each case on a primary and a replica of its own.
mod with_a_replica {
    use super::*;
    contract::contract_tests!(Replicated);
}

/// Every stage-3 switch at once: a replica behind every read, hybrid
/// timelines with this process's fan-out workers (a threshold of one
/// follower, so the contract's accounts take both paths: fanned out, and
/// merged at read time) and the feed cache on.
struct Everything(Replicated);

impl Backend for Everything {
    type Store = Stage2Store;

    async fn fresh() -> Self {
        let b = Replicated::start(1, |c| {
            c.feed_cache = true;
            c.feed_strategy = stage_2::store::FeedStrategy::Hybrid;
            c.celebrity_followers = 1;
        })
        .await;
        stage_2::fanout::start(b.store.clone());
        Self(b)
    }

    fn store(&self) -> Stage2Store {
        self.0.store()
    }

    fn uploads_dir(&self) -> PathBuf {
        self.0.uploads_dir()
    }

    async fn count(&self, table: &'static str) -> i64 {
        self.0.count(table).await
    }
}

/// Both contract suites with every switch of stage 3 on.
mod with_every_switch {
    use super::*;
    contract::contract_tests!(Everything);
}
