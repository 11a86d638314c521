//! Stage-1 benchmark: `cargo bench -p stage-1` (add `-- --help` for flags).
//!
//! Measures, on this machine, in one run, against the real `stage-1`
//! binary as a separate process:
//! 1. seeding a dataset (default 10k users / 100k photos / 50 follows per
//!    user / 200k likes) with `stage-1 seed`: wall time;
//! 2. raw Argon2id verify throughput on all cores (the hash is the floor
//!    of a login's cost), then HTTP login throughput with many concurrent
//!    clients, and their ratio;
//! 3. GET /api/feed at low concurrency (1 and 4 clients): the server-side
//!    time from the `Server-Timing: app` entry and the client-side time.
//!
//! It writes `results/bench-stage1.json` and prints a table. Numbers are
//! for the machine described in the file; the load generator shares it.

use clap::Parser;
use contract::load::{LoadResult, Process, closed_loop, ms, seeded_tokens};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stage-1");

#[derive(Debug, Parser)]
#[command(
    about = "Stage-1 benchmark: seeding time, login vs raw Argon2, feed latency",
    after_help = "Examples:\n  cargo bench -p stage-1\n  cargo bench -p stage-1 -- --quick\n  cargo bench -p stage-1 -- --secs 20 --out /tmp/b.json"
)]
struct Args {
    #[command(flatten)]
    dataset: contract::bench::DatasetFlags,
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Concurrent clients in the login phase.
    #[arg(long, default_value_t = 64)]
    login_clients: usize,
    /// --quick (a small dataset and short phases), --out FILE.
    #[command(flatten)]
    run: contract::bench::BenchFlags,
}

/// Raw Argon2id verify throughput: one thread per core, `secs` seconds.
fn raw_verify_rate(secs: u64) -> (f64, usize) {
    let hash = minigram::auth::hash_blocking(minigram::seed::SEED_PASSWORD).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count, hash) = (stop.clone(), count.clone(), hash.clone());
            std::thread::spawn(move || {
                // The same reusable-memory verifier the server's hashing threads use.
                let mut work = minigram::auth::PasswordWork::default();
                while !stop.load(Ordering::Relaxed) {
                    assert!(work.verify(minigram::seed::SEED_PASSWORD, &hash));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    (
        count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        threads,
    )
}

/// HTTP logins of seeded users by `clients` closed-loop clients.
async fn login_phase(url: &str, users: usize, clients: usize, secs: u64) -> LoadResult {
    let url = format!("{url}/api/login");
    closed_loop(clients, Duration::from_secs(secs), move |client, c, i| {
        let user = format!("user{}", 1 + (c + i * clients) % users);
        client
            .post(&url)
            .json(&json!({"username": user, "password": minigram::seed::SEED_PASSWORD}))
    })
    .await
}

/// GET /api/feed by `clients` closed-loop clients, each as its own viewer.
async fn feed_phase(url: &str, tokens: &[String], clients: usize, secs: u64) -> Value {
    let url = format!("{url}/api/feed?limit=20");
    let tokens = tokens.to_vec();
    let r = closed_loop(clients, Duration::from_secs(secs), move |client, c, i| {
        client
            .get(&url)
            .bearer_auth(&tokens[(c + i * clients) % tokens.len()])
    })
    .await;
    json!({
        "clients": clients,
        "requests": r.requests,
        "errors": r.errors,
        "rps": r.rps(),
        "serverP50Ms": ms(&r.server, 0.5), "serverP99Ms": ms(&r.server, 0.99),
        "dbP50Ms": ms(&r.db, 0.5), "dbP99Ms": ms(&r.db, 0.99),
        "clientP50Ms": ms(&r.latency, 0.5), "clientP99Ms": ms(&r.latency, 0.99),
    })
}

#[tokio::main]
async fn main() {
    let mut args = Args::parse();
    if args.run.quick {
        args.dataset = contract::bench::DatasetFlags::QUICK;
        args.secs = 2;
        args.login_clients = args.login_clients.min(8);
    }
    let out = args.run.out_or("bench-stage1.json");
    let dir = tempfile::tempdir().unwrap();

    eprintln!("bench 1/4: seeding {}", args.dataset.describe());
    let started = Instant::now();
    let status = Command::new(BIN)
        .arg("seed")
        .args(args.dataset.seed_args())
        .arg("--data-dir")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "stage-1 seed failed");
    let seed_secs = started.elapsed().as_secs_f64();

    eprintln!(
        "bench 2/4: raw Argon2id verify throughput for {} s (server not running)",
        args.secs
    );
    let (raw_rate, threads) = raw_verify_rate(args.secs);

    let data_dir = dir.path().to_str().unwrap().to_owned();
    let server = Process::start(
        Path::new(BIN),
        &["--listen", "127.0.0.1:0", "--data-dir", &data_dir],
    );
    eprintln!(
        "bench 3/4: HTTP login with {} clients for {} s",
        args.login_clients, args.secs
    );
    let login = login_phase(
        &server.url,
        args.dataset.users,
        args.login_clients,
        args.secs,
    )
    .await;
    let login_rate = login.rps();
    assert!(login.requests > 0, "no login succeeded");
    let tokens = seeded_tokens(&server.url, 64, args.dataset.users).await;

    eprintln!(
        "bench 4/4: GET /api/feed with 1 and 4 clients, {} s each",
        args.secs
    );
    let feed_1 = feed_phase(&server.url, &tokens, 1, args.secs).await;
    let feed_4 = feed_phase(&server.url, &tokens, 4, args.secs).await;
    drop(server);

    let result = json!({
        "schema": "minigram.bench-stage1/1",
        "command": "cargo bench -p stage-1",
        "commit": measure::machine::git_commit(),
        "machine": measure::machine::Machine::current(),
        "quick": args.run.quick,
        "dataset": args.dataset.json(),
        "seed": {"seconds": seed_secs, "targetSeconds": 60.0},
        "login": {
            "rawVerifyPerSec": raw_rate, "rawVerifyThreads": threads,
            "httpLoginPerSec": login_rate, "clients": args.login_clients,
            "ratio": login_rate / raw_rate, "targetRatio": 0.8,
            "p50Ms": ms(&login.latency, 0.5), "p99Ms": ms(&login.latency, 0.99), "errors": login.errors,
        },
        "feed": {"lowConcurrency": [feed_1, feed_4], "targetServerP50Ms": 2.0, "targetServerP99Ms": 10.0},
    });
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap() + "\n").unwrap();

    println!(
        "\nstage-1 benchmark ({} cores, commit {})",
        threads,
        result["commit"].as_str().unwrap()
    );
    println!("{:<44} {:>12} {:>12}", "measure", "value", "target");
    println!(
        "{:<44} {:>10.1} s {:>10} s",
        "seed dataset", seed_secs, "< 60"
    );
    println!(
        "{:<44} {:>10.1}/s {:>12}",
        "raw argon2 verify (all cores)", raw_rate, ""
    );
    println!(
        "{:<44} {:>10.1}/s {:>12}",
        format!("HTTP login ({} clients)", args.login_clients),
        login_rate,
        ""
    );
    println!(
        "{:<44} {:>12.2} {:>12}",
        "login / raw verify",
        login_rate / raw_rate,
        ">= 0.80"
    );
    for f in [
        &result["feed"]["lowConcurrency"][0],
        &result["feed"]["lowConcurrency"][1],
    ] {
        let c = f["clients"].as_u64().unwrap();
        println!(
            "{:<44} {:>9.2} ms {:>9} ms",
            format!("feed server p50, {c} client(s)"),
            f["serverP50Ms"].as_f64().unwrap(),
            "<= 2"
        );
        println!(
            "{:<44} {:>9.2} ms {:>9} ms",
            format!("feed server p99, {c} client(s)"),
            f["serverP99Ms"].as_f64().unwrap(),
            "<= 10"
        );
        println!(
            "{:<44} {:>9.2} ms {:>12}",
            format!("feed client p50, {c} client(s)"),
            f["clientP50Ms"].as_f64().unwrap(),
            ""
        );
        println!(
            "{:<44} {:>10.0}/s {:>12}",
            format!("feed throughput, {c} client(s)"),
            f["rps"].as_f64().unwrap(),
            ""
        );
    }
    println!("\nwrote {}", out.display());
}
