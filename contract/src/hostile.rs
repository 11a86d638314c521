//! The hostile-client suite: what one client that is slow, malformed or
//! malicious can do to everyone else, tried from outside on a real socket.
//!
//! - several hundred connections trickling request bodies hold no slot:
//!   another client's reads keep getting 200, and each trickle ends in
//!   `408 body_timeout` (`slow_bodies_hold_no_slot`);
//! - made-up HTTP methods do not grow `/metrics` or the live window
//!   (`invented_methods_add_no_series`);
//! - a parallel burst of wrong passwords for one account spends at most
//!   the configured number of hashes, and one address cannot spray a
//!   password over many accounts (`parallel_guesses_spend_bounded_hashes`,
//!   `one_address_cannot_spray_every_account`);
//! - sessions do not pile up: expired ones are purged, a user's live ones
//!   are capped (`sessions_are_purged_and_capped`);
//! - [`image_burst_in_a_memory_limit`]: a burst of small files that decode
//!   to huge images, against a stage binary in a memory-limited cgroup.

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::load::Process;
use super::{Backend, assert_error, photo_form, spawn_app_with};
use minigram::Settings;
use minigram::admission::Limits;
use minigram::auth::{self, Throttle};
use minigram::body::BodyLimits;
use minigram::domain::{UserId, Username};
use minigram::store::{NewSession, SessionUser, Store};

/// Slow-body connections one client opens in the test.
const TRICKLERS: usize = 300;
/// The bound a bystander's read must be answered within while they trickle.
const BYSTANDER_BOUND: Duration = Duration::from_secs(1);

/// Opens a connection that declares a 60 kB sign-in body and sends one
/// byte of it.
async fn trickler(addr: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: minigram\r\nContent-Type: application/json\r\n\
          Content-Length: 60000\r\n\r\n{",
    )
    .await?;
    Ok(s)
}

/// Reads the status line the server sent on a trickling connection (it
/// may have closed the connection after answering).
async fn status_of(mut s: TcpStream) -> String {
    let mut buf = vec![0u8; 512];
    let mut got = 0;
    while got < buf.len() {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf[got..])).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got += n;
                if buf[..got].contains(&b'\n') {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&buf[..got])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// 300 connections from one client each declare a 60 kB sign-in body and
/// send a byte a second, against a process with only 32 request slots.
/// Bodies are read before a request takes a slot, so a second client's
/// reads all get 200 within [`BYSTANDER_BOUND`] while the trickle lasts,
/// and every trickler is answered `408 body_timeout` once the body
/// deadline (2 s here) has passed. Before, the tricklers held every slot
/// and everyone else got 503 `overloaded`.
pub async fn slow_bodies_hold_no_slot<B: Backend>() {
    let app = spawn_app_with::<B>(Settings {
        limits: Limits {
            max_in_flight: 32,
            ..Limits::default()
        },
        bodies: BodyLimits {
            deadline: Duration::from_secs(2),
            ..BodyLimits::default()
        },
        ..Settings::default()
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..TRICKLERS {
        slow.push(trickler(&addr).await.expect("open a trickling connection"));
    }
    let started = Instant::now();
    let trickle = async {
        // A byte a second on every connection, for 3 s (past the deadline).
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for s in &mut slow {
                let _ = s.write_all(b" ").await;
            }
        }
    };
    let bystander = async {
        let mut answers = Vec::new();
        while started.elapsed() < Duration::from_millis(2500) {
            let t = Instant::now();
            let status = app.get("/api/explore", None).await.status();
            answers.push((status, t.elapsed()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answers
    };
    let ((), answers) = tokio::join!(trickle, bystander);
    let slowest = answers.iter().map(|a| a.1).max().unwrap_or_default();
    eprintln!(
        "{TRICKLERS} trickling bodies: {} reads by a bystander, slowest {slowest:?}",
        answers.len()
    );
    assert!(answers.len() >= 10, "{} reads", answers.len());
    for (status, took) in &answers {
        assert_eq!(
            *status,
            StatusCode::OK,
            "a read while {TRICKLERS} bodies trickle"
        );
        assert!(*took < BYSTANDER_BOUND, "a read took {took:?}");
    }
    let statuses = join_all(slow.into_iter().map(status_of)).await;
    let timed_out = statuses
        .iter()
        .filter(|s| s.starts_with("HTTP/1.1 408"))
        .count();
    assert_eq!(
        timed_out,
        TRICKLERS,
        "every trickle ends in 408: {:?}",
        statuses
            .iter()
            .filter(|s| !s.starts_with("HTTP/1.1 408"))
            .take(3)
            .collect::<Vec<_>>()
    );
    // The body deadline's answer, as a client sees it in full.
    let mut one = trickler(&addr).await.unwrap();
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), one.read_to_string(&mut text)).await;
    assert!(text.contains("\"code\":\"body_timeout\""), "{text}");
}

/// The series of `/metrics` that carry a method label, as
/// (metric, method) pairs with the full label set.
fn method_series(metrics: &str) -> Vec<(String, String)> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                || l.starts_with("http_server_active_requests{")
        })
        .filter_map(|l| {
            let labels = l.split_once('{')?.1.split_once('}')?.0;
            let method = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("http_request_method="))?
                .trim_matches('"')
                .to_owned();
            Some((labels.to_owned(), method))
        })
        .collect()
}

/// Three hundred requests with invented method names (no sign-in needed),
/// on real routes and on paths that match nothing: every one is answered
/// 405 or 404 as JSON, and they add at most a handful of series to
/// `/metrics` (the `_OTHER` method, on the routes they hit) and of rows to
/// the live window. Before, each invented name added its own series.
pub async fn invented_methods_add_no_series<B: Backend>() {
    let app = spawn_app_with::<B>(Settings::default()).await;
    let standard = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    for i in 0..300 {
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        let path = match i % 3 {
            0 => "/api/feed".to_owned(),
            1 => "/api/login".to_owned(),
            _ => format!("/no/such/path/{i}"),
        };
        let res = app.send(method, &path, None).await;
        assert!(
            matches!(res.status().as_u16(), 404 | 405),
            "{}",
            res.status()
        );
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let series = method_series(&metrics);
    for (labels, method) in &series {
        assert!(
            standard.contains(&method.as_str()) || method == minigram::telemetry::OTHER,
            "a made-up method became a label value: {labels}"
        );
    }
    let other: BTreeSet<_> = series
        .iter()
        .filter(|(_, m)| m == minigram::telemetry::OTHER)
        .map(|(l, _)| l)
        .collect();
    assert!(
        !other.is_empty() && other.len() <= 4,
        "the invented methods fill at most a handful of series: {other:?}"
    );
    eprintln!(
        "300 invented methods: {} `_OTHER` series in /metrics: {other:?}",
        other.len()
    );
    // The live window: one row per (method, route) it saw.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let live: Value = app.get("/api/metrics", None).await.json().await.unwrap();
    let rows: BTreeSet<(String, String)> = live["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["route"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let other_rows = rows
        .iter()
        .filter(|(m, _)| m == minigram::telemetry::OTHER)
        .count();
    assert!(
        rows.iter()
            .all(|(m, _)| standard.contains(&m.as_str()) || m == minigram::telemetry::OTHER),
        "{rows:?}"
    );
    assert!(
        (1..=3).contains(&other_rows),
        "_OTHER rows in the live window: {rows:?}"
    );
}

fn throttled(max_failures: u32, per_client: u32) -> Settings {
    super::throttled(Throttle {
        max_failures,
        max_failures_per_client: per_client,
        window: Duration::from_secs(60),
    })
}

/// Forty wrong passwords for one account sent at once, with the limit at
/// five: each attempt is reserved before its hash, so at most five hashes
/// are spent and at most five answers are 401; the rest are 429
/// `too_many_attempts`. Before, the check and the count were separate, so
/// every guess of the burst passed the check and was hashed.
pub async fn parallel_guesses_spend_bounded_hashes<B: Backend>() {
    let app = spawn_app_with::<B>(throttled(5, 1000)).await;
    app.registered("alice").await;
    let before = app.hasher.hashes_done();
    let answers = join_all((0..40).map(|i| {
        let app = &app;
        async move {
            app.login("alice", &format!("wrong-guess-{i}"))
                .await
                .status()
        }
    }))
    .await;
    let spent = app.hasher.hashes_done() - before;
    let wrong = answers.iter().filter(|s| **s == 401).count();
    let locked = answers.iter().filter(|s| **s == 429).count();
    assert_eq!(wrong + locked, 40, "only 401 or 429: {answers:?}");
    assert!((1..=5).contains(&wrong), "{wrong} guesses were verified");
    assert!(spent <= 5, "{spent} hashes spent on a burst limited to 5");
    eprintln!("40 parallel guesses, limit 5: {spent} hashes, {wrong} × 401, {locked} × 429");
    assert_error(
        app.login("alice", "password123").await,
        429,
        "too_many_attempts",
        "the right password while locked",
    )
    .await;
}

/// One address guessing one password over many accounts is stopped by the
/// per-address limit (here 6) before the accounts' own limits (10), and
/// its further tries — even with a right password — get 429 without a
/// hash; a client from another address is not affected.
pub async fn one_address_cannot_spray_every_account<B: Backend>() {
    let app = spawn_app_with::<B>(throttled(10, 6)).await;
    app.registered("bob").await;
    let before = app.hasher.hashes_done();
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(
            app.login(&format!("victim{i}"), "Summer2026!")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[..6], [401; 6], "{statuses:?}");
    assert_eq!(statuses[6..], [429; 6], "{statuses:?}");
    assert_eq!(app.hasher.hashes_done() - before, 6);
    assert_eq!(app.login("bob", "password123").await.status(), 429);
    // The same sign-in from another loopback address is served.
    let elsewhere = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = elsewhere
        .post(app.url("/api/login"))
        .json(&serde_json::json!({"username": "bob", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "another address signs in");
}

/// Sessions that expired are gone after the purge interval (here 200 ms),
/// live ones stay; and a user who signs in more than
/// [`auth::MAX_SESSIONS_PER_USER`] times keeps only that many, the newest.
pub async fn sessions_are_purged_and_capped<B: Backend>() {
    let app = spawn_app_with::<B>(Settings {
        session_purge_every: Duration::from_millis(200),
        ..Settings::default()
    })
    .await;
    let alice = app.make_user("alice").await; // one live session
    let user = SessionUser {
        user_id: UserId(alice.id),
        username: Username::parse("alice").unwrap(),
    };
    let now = minigram::app::now_secs();
    for _ in 0..5 {
        app.store
            .create_session(NewSession {
                token_hash: auth::token_hash(&auth::new_token()),
                user: user.clone(),
                expires_at: now + 1,
            })
            .await
            .unwrap();
    }
    assert_eq!(app.count("sessions").await, 6);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.count("sessions").await != 1 {
        assert!(
            Instant::now() < deadline,
            "expired sessions still stored: {}",
            app.count("sessions").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/api/me", Some(&alice.token)).await.status(), 200);

    let cap = auth::MAX_SESSIONS_PER_USER as i64;
    let mut tokens = Vec::new();
    for i in 0..cap + 5 {
        let token = auth::new_token();
        app.store
            .create_session(NewSession {
                token_hash: auth::token_hash(&token),
                user: user.clone(),
                expires_at: now + 3600 + i,
            })
            .await
            .unwrap();
        tokens.push(token);
    }
    assert_eq!(app.count("sessions").await, cap, "one user's live sessions");
    assert_eq!(app.get("/api/me", Some(&tokens[0])).await.status(), 401);
    let newest = tokens.last().unwrap();
    assert_eq!(app.get("/api/me", Some(newest)).await.status(), 200);
}

/// A PNG of one colour: tiny on the wire (best compression), `w × h × 4`
/// bytes decoded.
pub fn flat_png(w: u32, h: u32) -> Vec<u8> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let pixels = image::RgbaImage::from_pixel(w, h, image::Rgba([200, 30, 90, 255]));
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Up)
        .write_image(&pixels, w, h, image::ExtendedColorType::Rgba8)
        .expect("encode png");
    out
}

/// A memory-limited cgroup for one process (v1 `memory` controller, or v2
/// `memory.max`), removed when dropped. Fails loudly where cgroups cannot
/// be written (not root, no memory controller): the test needs one.
pub struct MemoryCage {
    dir: std::path::PathBuf,
    v2: bool,
}

impl MemoryCage {
    pub fn new(name: &str, limit_bytes: u64) -> Self {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let root = if v2 {
            Path::new("/sys/fs/cgroup")
        } else {
            Path::new("/sys/fs/cgroup/memory")
        };
        // Unique per cage: tests of one binary run in parallel.
        let dir = root.join(format!(
            "{name}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the memory cgroup {} ({e}): this test needs root and cgroups",
                dir.display()
            )
        });
        let limit_file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(dir.join(limit_file), limit_bytes.to_string())
            .unwrap_or_else(|e| panic!("cannot set {limit_file}: {e}"));
        Self { dir, v2 }
    }

    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move {pid} into {}: {e}", self.dir.display()));
    }

    /// The most memory the group has used (v2 without `memory.peak`: now).
    pub fn peak_bytes(&self) -> u64 {
        let files: &[&str] = if self.v2 {
            &["memory.peak", "memory.current"]
        } else {
            &["memory.max_usage_in_bytes"]
        };
        files
            .iter()
            .find_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCage {
    fn drop(&mut self) {
        // Empty once its process is gone; retry briefly while it exits.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The memory the image burst test gives the server.
pub const CAGE_BYTES: u64 = 640 * 1024 * 1024;

/// What [`image_burst_in_a_memory_limit`] saw.
#[derive(Debug)]
pub struct BurstReport {
    pub statuses: Vec<u16>,
    pub peak_bytes: u64,
}

/// Starts `stage_bin` with `flags` in a [`CAGE_BYTES`] memory cgroup, then
/// sends 24 uploads at once from one account: 16 single-colour PNGs of
/// 4,898 × 4,898 (24 megapixels, the most accepted: ~92 MiB each decoded,
/// ~1.4 GiB if all were decoded at once) and 8 of 8,192 × 8,192 (over the
/// pixel budget). The process lives; every answer is 201/202 (processed or
/// queued), 503 `overloaded` (the image pool is full) or 422
/// `image_too_large` (refused from the header); `/health` answers 200
/// during and after the burst. Panics with the reason otherwise.
pub fn image_burst_in_a_memory_limit(stage_bin: &Path, flags: &[&str]) -> BurstReport {
    let cage = MemoryCage::new("minigram-image-burst", CAGE_BYTES);
    let mut server = Process::on_free_port(stage_bin, flags);
    cage.add(server.pid());
    let url = server.url.clone();
    let allowed = flat_png(4898, 4898);
    let bomb = flat_png(8192, 8192);
    assert!(
        allowed.len() < 1_000_000 && bomb.len() < 1_000_000,
        "small files: {} and {} bytes",
        allowed.len(),
        bomb.len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let statuses = runtime.block_on(async {
        let client = reqwest::Client::new();
        let token = crate::register_at(&client, &url, "burster").await.token;
        let uploads = (0..24).map(|i| {
            let bytes = if i % 3 == 2 {
                bomb.clone()
            } else {
                allowed.clone()
            };
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            async move {
                let res = client
                    .post(format!("{url}/api/photos"))
                    .bearer_auth(token)
                    .multipart(photo_form(bytes, "flat.png", "flat"))
                    .send()
                    .await
                    .expect("the server answers an upload");
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                match status {
                    201 | 202 => {}
                    422 => assert_eq!(body["code"], "image_too_large", "{body}"),
                    503 => assert_eq!(body["code"], "overloaded", "{body}"),
                    other => panic!("upload answered {other}: {body}"),
                }
                status
            }
        });
        let health = async {
            let mut seen = Vec::new();
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let res = client.get(format!("{url}/health")).send().await;
                seen.push(res.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            seen
        };
        let (statuses, health) = tokio::join!(join_all(uploads), health);
        assert!(
            health.iter().all(|s| *s == 200),
            "/health during the burst: {health:?}"
        );
        let after = client.get(format!("{url}/health")).send().await;
        assert_eq!(after.map(|r| r.status().as_u16()).ok(), Some(200));
        statuses
    });
    assert!(
        server.is_running(),
        "the server died in its memory limit (peak {} MiB)",
        cage.peak_bytes() >> 20
    );
    let report = BurstReport {
        statuses,
        peak_bytes: cage.peak_bytes(),
    };
    assert_eq!(
        report.statuses.iter().filter(|s| **s == 422).count(),
        8,
        "{:?}",
        report.statuses
    );
    assert!(
        report.statuses.iter().any(|s| matches!(s, 201 | 202)),
        "some uploads were processed: {:?}",
        report.statuses
    );
    drop(server);
    report
}

/// Generates one `#[tokio::test]` per hostile-client case for a backend.
#[macro_export]
macro_rules! hostile_contract_tests {
    ($backend:ty) => {
        $crate::__contract_cases!($backend; hostile;
            slow_bodies_hold_no_slot,
            invented_methods_add_no_series,
            parallel_guesses_spend_bounded_hashes,
            one_address_cannot_spray_every_account,
            sessions_are_purged_and_capped
        );
    };
}
