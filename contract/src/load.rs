//! Small load-generation helpers for the stage benchmarks: run a stage's
//! binary as a separate process, and drive closed-loop clients against it.
//! (The user-journey load tests with Goose live in the `loadtests` crate.)

use hdrhistogram::Histogram;
use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Load tests of one test binary take turns: two at once share the
/// machine's two cores, and a test that times shedding and recovery (the
/// spike) would measure the other test's load, not its own.
pub fn one_load_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that panicked while holding its turn still hands it on.
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stage binary running as its own process, killed when dropped.
pub struct Process {
    child: Child,
    pub url: String,
}

impl Process {
    /// Starts `bin` with `args` and waits until it prints
    /// `Minigram <stage> on <url>`.
    pub fn start(bin: &Path, args: &[&str]) -> Self {
        let child = Command::new(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("MINIGRAM_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // Owned by the guard from here on: killed and reaped on every path.
        let mut p = Self {
            child,
            url: String::new(),
        };
        let mut lines = BufReader::new(p.child.stderr.take().expect("stderr")).lines();
        for line in lines.by_ref() {
            let line = line.expect("read stderr");
            if let Some((_, rest)) = line.split_once(" on http://")
                && line.starts_with("Minigram stage")
            {
                p.url = format!(
                    "http://{}",
                    rest.split_whitespace().next().unwrap_or_default()
                );
                // Keep draining the server's log and show it (RUST_LOG is
                // `warn` unless MINIGRAM_SERVER_LOG says otherwise).
                let name = bin
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                std::thread::spawn(move || {
                    for line in lines.map_while(Result::ok) {
                        eprintln!("[{name}] {line}");
                    }
                });
                return p;
            }
        }
        panic!("{} exited before printing its address", bin.display());
    }

    /// Starts a stage binary on a free port of 127.0.0.1 with `flags`.
    pub fn on_free_port(bin: &Path, flags: &[&str]) -> Self {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        Self::start(bin, &args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Is the process still running (not exited, not killed)?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// Microseconds at quantile `q`, as milliseconds.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// What a closed-loop run measured.
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    /// Failed requests by status code (0: no response at all).
    pub error_statuses: std::collections::BTreeMap<u16, u64>,
    pub seconds: f64,
    /// Client-side latency, µs.
    pub latency: Histogram<u64>,
    /// Server-side time in storage (`Server-Timing: db`), µs.
    pub db: Histogram<u64>,
    /// Server-side total (`Server-Timing: app`), µs.
    pub server: Histogram<u64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "errorStatuses": self.error_statuses,
            "seconds": self.seconds,
            "rps": self.rps(),
            "p50Ms": ms(&self.latency, 0.5),
            "p99Ms": ms(&self.latency, 0.99),
            "serverP50Ms": ms(&self.server, 0.5),
            "serverP99Ms": ms(&self.server, 0.99),
            "dbMeanMs": self.db.mean() / 1000.0,
            "serverMeanMs": self.server.mean() / 1000.0,
        })
    }
}

/// `clients` concurrent clients, each sending its next request as soon as
/// the previous one answered, for `duration`. `request(client, i)` builds
/// request number `i` of a client; a response counts as an error unless
/// its status is 2xx. Each client has its own connection (keep-alive).
pub async fn closed_loop(
    clients: usize,
    duration: Duration,
    request: impl Fn(&Client, usize, usize) -> RequestBuilder + Send + Sync + Clone + 'static,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let request = request.clone();
            tokio::spawn(async move {
                let client = Client::new();
                let (mut lat, mut db, mut server) = (histogram(), histogram(), histogram());
                let (mut ok, mut errors) = (0u64, std::collections::BTreeMap::<u16, u64>::new());
                let mut i = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let res = request(&client, c, i).send().await;
                    i += 1;
                    let Ok(res) = res else {
                        *errors.entry(0).or_default() += 1;
                        continue;
                    };
                    let timing = res
                        .headers()
                        .get("server-timing")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let status = res.status();
                    let body = res.bytes().await.unwrap_or_default();
                    if status.is_server_error() {
                        eprintln!(
                            "[load] {status} {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        );
                    }
                    if !status.is_success() {
                        *errors.entry(status.as_u16()).or_default() += 1;
                        continue;
                    }
                    ok += 1;
                    let _ = lat.record(t.elapsed().as_micros().max(1) as u64);
                    let us = |name| {
                        (minigram::timing::parse_entry(&timing, name).unwrap_or(0.0) * 1000.0)
                            .max(1.0) as u64
                    };
                    let _ = db.record(us("db"));
                    let _ = server.record(us("app"));
                }
                (ok, errors, lat, db, server)
            })
        })
        .collect();
    let mut total = LoadResult {
        requests: 0,
        errors: 0,
        error_statuses: Default::default(),
        seconds: 0.0,
        latency: histogram(),
        db: histogram(),
        server: histogram(),
    };
    for t in tasks {
        let (ok, errors, lat, db, server) = t.await.expect("client task");
        total.requests += ok;
        for (status, n) in errors {
            total.errors += n;
            *total.error_statuses.entry(status).or_default() += n;
        }
        let _ = total.latency.add(lat);
        let _ = total.db.add(db);
        let _ = total.server.add(server);
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

/// A signed-in seeded user.
#[derive(Debug, Clone)]
pub struct SeededSession {
    pub user_id: i64,
    pub token: String,
}

/// Logs in `count` seeded users (`user1`...), spread over the `users`.
pub async fn seeded_sessions(url: &str, count: usize, users: usize) -> Vec<SeededSession> {
    let client = Client::new();
    let mut sessions = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("user{}", 1 + (i * 7919) % users.max(1));
        let res = client
            .post(format!("{url}/api/login"))
            .json(&json!({"username": name, "password": minigram::seed::SEED_PASSWORD}))
            .send()
            .await
            .expect("login request");
        assert!(
            res.status().is_success(),
            "login of {name} failed: {}",
            res.status()
        );
        let body: Value = res.json().await.expect("login body");
        sessions.push(SeededSession {
            user_id: body["userId"].as_i64().expect("userId"),
            token: body["token"].as_str().expect("token").to_owned(),
        });
    }
    sessions
}

/// The tokens of [`seeded_sessions`].
pub async fn seeded_tokens(url: &str, count: usize, users: usize) -> Vec<String> {
    seeded_sessions(url, count, users)
        .await
        .into_iter()
        .map(|s| s.token)
        .collect()
}

pub use measure::machine::{machine_busy_seconds, process_cpu_seconds};
