//! Crash safety of a stage-2 process: SIGKILL in the middle of a
//! write-heavy load loses no acknowledged write (Postgres committed it
//! before the answer; sessions live in Redis) and the data stay
//! consistent; with push timelines, a SIGKILL mid-fan-out costs no
//! follower an acknowledged photo.

mod common;

use common::{redis, timeline_key};
use contract::Backend;
use contract::crash::crash_during_writes;
use contract::load::Process;
use contract::{TestUser, photo_form, png, register_at};
use reqwest::StatusCode;
use serde_json::Value;
use stage_2::Stage2Store;
use stage_2::store::{FeedStrategy, timelines::GROUP};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_survives_sigkill() {
    let (config, name) = common::fresh_config();
    let db = common::Pg::with_config(config.clone(), name).await;
    let flags = common::storage_flags(&config, db.uploads_dir().parent().unwrap());
    let report = tokio::task::spawn_blocking(move || {
        crash_during_writes(
            Path::new(env!("CARGO_BIN_EXE_stage-2")),
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    })
    .await
    .expect("crash test");
    eprintln!(
        "stage 2 crash test: {} writes acknowledged at the kill, {} in all, {} found after restart",
        report.acked_at_kill, report.acked, report.found
    );
    assert_eq!(report.found, report.acked, "{}", report.verify_output);
    drop(db);
}

/// 2,000 users with no think time against the default limits: up, bounded,
/// shedding fast, recovered (see `contract::spike`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_is_shed_and_recovered_from() {
    let (config, name) = common::fresh_config();
    let db = common::Pg::with_config(config.clone(), name).await;
    let flags = common::storage_flags(&config, db.uploads_dir().parent().unwrap());
    tokio::task::spawn_blocking(move || {
        contract::spike::spike_test(
            Path::new(env!("CARGO_BIN_EXE_stage-2")),
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    })
    .await
    .expect("spike test");
    drop(db);
}

/// Push timelines: photos are posted to a `--feed-strategy push` process
/// while its fan-out worker runs, the process is SIGKILLed mid-way, and
/// after a restart every acknowledged photo reaches every follower's
/// timeline (what was announced and not yet fanned out, or taken by the
/// killed worker and never acknowledged, is finished by the new process:
/// undelivered entries by reading the group, pending ones by XAUTOCLAIM)
/// and a follower's feed, paged over HTTP, holds every one of them.
#[test]
fn acknowledged_uploads_reach_every_follower_after_a_sigkill() {
    const FOLLOWERS: usize = 20;
    // Under the timeline cap (500): the test asks for every photo in every
    // timeline, so none may be trimmed as the oldest.
    const MOST_UPLOADS: usize = 400;
    let _turn = contract::load::one_load_at_a_time();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut config, name) = common::fresh_config();
    config.feed_strategy = FeedStrategy::Push;
    let db = rt.block_on(common::Pg::with_config(config.clone(), name));
    let store = db.store.clone();
    let mut flags = common::storage_flags(&config, db.uploads_dir().parent().unwrap());
    flags.extend(["--feed-strategy", "push", "--fanout-claim-after-ms", "500"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let bin = Path::new(env!("CARGO_BIN_EXE_stage-2"));
    let client = reqwest::Client::new();

    let server = Process::on_free_port(bin, &flags);
    let url = server.url.clone();
    let (poster, followers) = rt.block_on(async {
        let poster = register_at(&client, &url, "poster").await;
        let mut followers = Vec::new();
        for i in 0..FOLLOWERS {
            let f = register_at(&client, &url, &format!("follower{i}")).await;
            let res = client
                .post(format!("{url}/api/users/{}/follow", poster.id))
                .bearer_auth(&f.token)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "follow: {}", res.status());
            // Builds the follower's timeline: from here on only fan-out
            // puts new photos in it.
            assert!(feed_page(&client, &url, &f.token, None).await.0.is_empty());
            followers.push(f);
        }
        (poster, followers)
    });

    // Four uploaders until the kill; each stops at its first failure.
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let uploaders: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), poster.token.clone());
            let (acked, sent) = (Arc::clone(&acked), Arc::clone(&sent));
            rt.spawn(async move {
                while sent.fetch_add(1, Ordering::SeqCst) < MOST_UPLOADS {
                    let res = client
                        .post(format!("{url}/api/photos"))
                        .bearer_auth(&token)
                        .multipart(photo_form(png(16, 16), "p.png", "crash"))
                        .send()
                        .await;
                    let Ok(res) = res else { break };
                    if res.status() != StatusCode::CREATED {
                        break;
                    }
                    let Ok(photo) = res.json::<Value>().await else {
                        break;
                    };
                    acked.lock().unwrap().push(photo["id"].as_i64().unwrap());
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acked.lock().unwrap().len() < 150 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(server); // SIGKILL, mid-upload and mid-fan-out
    for u in uploaders {
        rt.block_on(u).unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 150,
        "only {} uploads acknowledged before the kill",
        acked.len()
    );
    let stream = format!("{}:fanout:stream", config.redis_prefix);
    let pending: (i64, redis::Value, redis::Value, redis::Value) = rt.block_on(redis(
        &store,
        redis::cmd("XPENDING").arg(&stream).arg(GROUP),
    ));
    let missing_at_kill = rt.block_on(missing(&store, &followers, &acked));
    eprintln!(
        "timelines crash test: {} uploads acknowledged; at the kill {} entries pending (taken, \
         not acknowledged) and {missing_at_kill} follower timeline writes not yet done",
        acked.len(),
        pending.0
    );
    assert!(
        missing_at_kill > 0,
        "fan-out had caught up before the kill: the restart has nothing to recover"
    );

    let server = Process::on_free_port(bin, &flags);
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = missing(&store, &followers, &acked).await;
            if left == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{left} (follower, acknowledged photo) pairs still missing 30 s after the restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Through the API too: a follower's whole feed holds every one.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let (ids, next) = feed_page(&client, &server.url, &followers[0].token, before).await;
            seen.extend(ids);
            match next {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        for id in &acked {
            assert!(seen.contains(id), "acknowledged photo {id} not in the feed");
        }
    });
    drop(server);
    drop(store);
    drop(db);
}

/// One feed page over HTTP: its photo ids and its `next` cursor.
async fn feed_page(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    before: Option<String>,
) -> (Vec<i64>, Option<String>) {
    let mut path = format!("{url}/api/feed?limit=100");
    if let Some(b) = before {
        path += &format!("&before={b}");
    }
    let res = client.get(path).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "feed");
    let page: Value = res.json().await.unwrap();
    let ids = page["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    (ids, page["next"].as_str().map(str::to_owned))
}

/// (follower, photo) pairs not yet in the follower's timeline.
async fn missing(store: &Stage2Store, followers: &[TestUser], photos: &[i64]) -> usize {
    let mut left = 0;
    for f in followers {
        let key = timeline_key(store, f.id);
        let mut cmd = redis::cmd("ZMSCORE");
        cmd.arg(&key).arg(photos);
        let scores: Vec<Option<f64>> = redis(store, &cmd).await;
        left += scores.iter().filter(|s| s.is_none()).count();
    }
    left
}
