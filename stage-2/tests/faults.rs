//! Dependencies failing under a loaded stage 2: its own Redis and its own
//! Postgres cluster are started for these tests (on free ports), stopped
//! hard and started again while clients keep reading. The app must answer 503 fast while one is
//! down, never crash or hang, and recover without a restart.
//!
//! Needs `redis-server` and PostgreSQL's `initdb`/`pg_ctl` (Debian packages
//! redis-server and postgresql); fails, never skips, without them.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use cluster::{Postgres, free_port, wait_for_port};
use contract::Backend;
use minigram::{App, Application, Settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stage_2::{Stage2Config, Stage2Store};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A private redis-server, killed on drop.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect(
                "redis-server not found: install the redis-server package (scripts/test.sh does)",
            );
        let r = Self {
            port,
            child: Some(child),
        };
        wait_for_port(port);
        r
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The app on `config`, served on port 0.
async fn serve(config: Stage2Config, uploads: &Path) -> (String, actix_web::dev::ServerHandle) {
    let store = Stage2Store::connect(config).await.expect("connect");
    std::fs::create_dir_all(uploads).unwrap();
    let app = App {
        store,
        hasher: minigram::auth::Hasher::new(2, 64).unwrap(),
        images: minigram::image_pool::ImagePool::new(2, 64).unwrap(),
        uploads_dir: uploads.to_owned(),
        settings: Settings::default(),
    };
    let server = Application::build(app, "127.0.0.1:0", 2).unwrap();
    let url = format!("http://127.0.0.1:{}", server.port());
    let handle = server.handle();
    tokio::spawn(server.run_until_stopped());
    (url, handle)
}

/// Clients reading in a closed loop (explore, feed, me) for the whole
/// outage: every answer's status and time, or the transport error.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

#[derive(Debug)]
struct Answer {
    status: Result<u16, String>,
    took: Duration,
}

impl Load {
    fn start(url: &str, token: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|i| {
                let (url, token, stop) = (url.to_owned(), token.to_owned(), stop.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut answers = Vec::new();
                    let paths = ["/api/explore", "/api/feed", "/api/me"];
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let started = Instant::now();
                        let res = client
                            .get(format!("{url}{}", paths[n % paths.len()]))
                            .bearer_auth(&token)
                            .timeout(Duration::from_secs(30))
                            .send()
                            .await;
                        answers.push(Answer {
                            status: res.map(|r| r.status().as_u16()).map_err(|e| e.to_string()),
                            took: started.elapsed(),
                        });
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    answers
                })
            })
            .collect();
        Self { stop, clients }
    }

    /// Stops the clients; checks that the app answered every request (no
    /// crash, no dropped connection) within `worst`, with statuses from
    /// `allowed` only, and returns how many were 503.
    async fn finish(self, allowed: &[u16], worst: Duration) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for c in self.clients {
            all.extend(c.await.unwrap());
        }
        assert!(all.len() > 50, "only {} requests under load", all.len());
        let mut unavailable = 0;
        for a in &all {
            match &a.status {
                Err(e) => panic!("a request got no answer (crash or hang?): {e}"),
                Ok(s) if !allowed.contains(s) => panic!("unexpected status {s} under load"),
                Ok(503) => unavailable += 1,
                Ok(_) => {}
            }
        }
        let slowest = all.iter().map(|a| a.took).max().unwrap();
        assert!(slowest < worst, "slowest answer {slowest:?}");
        eprintln!(
            "under load: {} requests, {unavailable} answered 503, slowest {slowest:?}",
            all.len()
        );
        unavailable
    }
}

async fn login(client: &reqwest::Client, url: &str, name: &str) -> reqwest::Response {
    client
        .post(format!("{url}/api/login"))
        .json(&json!({"username": name, "password": "password123"}))
        .send()
        .await
        .unwrap()
}

/// Redis stops: session checks answer 503 `sessions_unavailable` quickly,
/// reads that need no session keep working from Postgres, nothing crashes;
/// when Redis is back, everything works again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stops_and_returns() {
    let mut redis = Redis::start(free_port());
    let (mut config, name) = common::fresh_config();
    config.redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let db = common::Pg::with_config(config.clone(), name).await; // owns the database's cleanup
    let (url, handle) = serve(config, &db.uploads_dir()).await;
    let client = reqwest::Client::new();
    let token = contract::register_at(&client, &url, "steady").await.token;
    assert_eq!(
        client
            .get(format!("{url}/api/feed"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let load = Load::start(&url, &token, 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    for path in ["/api/me", "/api/feed"] {
        let started = Instant::now();
        let res = client
            .get(format!("{url}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(res.headers().contains_key("retry-after"));
        assert_eq!(
            res.json::<Value>().await.unwrap()["code"],
            "sessions_unavailable"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} answered in {:?}",
            started.elapsed()
        );
    }
    let explore = client
        .get(format!("{url}/api/explore"))
        .send()
        .await
        .unwrap();
    assert_eq!(explore.status(), 200, "anonymous reads need only Postgres");
    let ready = client.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        login(&client, &url, "steady").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    let _redis = Redis::start(redis.port);
    // This Redis keeps nothing on disk, so old sessions are gone; a new
    // login works at once, on the same app process.
    let deadline = Instant::now() + Duration::from_secs(10);
    let token = loop {
        let res = login(&client, &url, "steady").await;
        if res.status() == 200 {
            break res.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(Instant::now() < deadline, "no recovery: {}", res.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        client
            .get(format!("{url}/api/feed"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{url}/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The load's old token died with Redis's memory: 401 after the restart.
    let shed = load.finish(&[200, 401, 503], Duration::from_secs(5)).await;
    assert!(shed > 0, "the outage was seen under load");
    handle.stop(false).await;
}

/// Postgres stops hard and starts again: requests answer 503 while it is
/// down (fast, no hang), and the pool reconnects by itself afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarts() {
    let pg = tokio::task::spawn_blocking(Postgres::init).await.unwrap();
    let mut config = Stage2Config::new(pg.url(), common::redis_server());
    config.redis_prefix = format!("mgtest:{}", common::unique_name());
    config.pg_pool_size = 4;
    let uploads = tempfile::tempdir().unwrap();
    let (url, handle) = serve(config, uploads.path()).await;
    let client = reqwest::Client::new();
    let token = contract::register_at(&client, &url, "durable").await.token;

    let load = Load::start(&url, &token, 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop_immediately();
        pg
    })
    .await
    .unwrap();
    // (The feed is not asked here: the load has cached it in Redis, and a
    // cached feed is served while Postgres is down.)
    for path in ["/api/me", "/api/explore"] {
        let started = Instant::now();
        let res = client
            .get(format!("{url}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(
            res.json::<Value>().await.unwrap()["code"],
            "storage_unavailable"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{path} answered in {:?}",
            started.elapsed()
        );
    }

    let pg = tokio::task::spawn_blocking(move || {
        pg.start();
        pg
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = client
            .get(format!("{url}/api/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            assert_eq!(res.json::<Value>().await.unwrap()["username"], "durable");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", res.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let like = client
        .post(format!("{url}/api/users/1/follow"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        like.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "writes work again (self-follow is refused as usual)"
    );
    let shed = load.finish(&[200, 503], Duration::from_secs(6)).await;
    assert!(shed > 0, "the outage was seen under load");
    handle.stop(false).await;
    drop(pg);
}

/// Keys of `pattern` (after the prefix) on the Redis at `url`.
async fn keys_on(url: &str, prefix: &str, pattern: &str) -> usize {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:{pattern}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

/// With the feed cache on its own Redis (`--cache-redis-url`), cached
/// feeds live only there and sessions only on the state Redis, so cache
/// pressure (an `allkeys-lru` cache server) can never evict a session.
/// Losing the cache server costs nothing but the cache: sessions and feed
/// reads keep answering 200 (the cache is bypassed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_feed_cache_on_its_own_redis() {
    let mut cache = Redis::start(free_port());
    let cache_url = format!("redis://127.0.0.1:{}", cache.port);
    let (mut config, name) = common::fresh_config();
    config.cache_redis_url = Some(cache_url.clone());
    let prefix = config.redis_prefix.clone();
    let db = common::Pg::with_config(config.clone(), name).await;
    let (url, handle) = serve(config, &db.uploads_dir()).await;
    let client = reqwest::Client::new();
    let token = contract::register_at(&client, &url, "split").await.token;
    let feed = || {
        client
            .get(format!("{url}/api/feed"))
            .bearer_auth(&token)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(feed().await.unwrap().status(), 200);
    }
    assert!(
        keys_on(&cache_url, &prefix, "feed*").await >= 2,
        "cache keys on the cache server"
    );
    assert_eq!(
        db.redis_keys("feed*").await,
        0,
        "no cache key on the state server"
    );
    assert_eq!(
        db.redis_keys("session:*").await,
        1,
        "the session on the state server"
    );
    assert_eq!(keys_on(&cache_url, &prefix, "session*").await, 0);

    cache.kill();
    assert_eq!(
        feed().await.unwrap().status(),
        200,
        "feed without its cache"
    );
    let me = client
        .get(format!("{url}/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "the session is untouched");
    assert_eq!(login(&client, &url, "split").await.status(), 200);
    handle.stop(true).await;
}
