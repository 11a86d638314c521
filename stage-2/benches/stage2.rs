//! Stage-2 benchmark: `cargo build --release -p stage-1 && cargo bench -p stage-2`
//! (add `-- --help` for flags).
//!
//! On this machine, in one run, against the real binaries as separate
//! processes, with the same generated dataset (default 10k users / 100k
//! photos / 50 follows per user / 200k likes):
//! 1. seeding stage 2 with `stage-2 seed` (COPY): wall time;
//! 2. read throughput: a trivial handler (`GET /health`) and `GET /api/feed`
//!    with a warm cache, by the same closed-loop generator (and by `wrk`
//!    when it is installed), and their ratio;
//! 3. a write-heavy mix (likes, follows, uploads) with 64 concurrent
//!    clients against stage 2 and then stage 1, with the storage time of
//!    each write from `Server-Timing: db`.
//!
//! It writes `results/bench-stage2.json` and prints a table. The load
//! generator, Postgres and Redis share the machine with the app.

use clap::Parser;
use contract::load::{
    Process, SeededSession, closed_loop, machine_busy_seconds, process_cpu_seconds,
    seeded_sessions, seeded_tokens,
};
use contract::png;
use rand::RngCore;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const STAGE2: &str = env!("CARGO_BIN_EXE_stage-2");

#[derive(Debug, Parser)]
#[command(
    about = "Stage-2 benchmark: seeding, feed vs trivial handler, write mix vs stage 1",
    after_help = "Examples:\n  cargo build --release -p stage-1 && cargo bench -p stage-2\n  cargo bench -p stage-2 -- --quick\n  cargo bench -p stage-2 -- --secs 20 --clients 64"
)]
struct Args {
    #[command(flatten)]
    dataset: contract::bench::DatasetFlags,
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Concurrent clients for the read phases.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Concurrent clients for the write mix.
    #[arg(long, default_value_t = 64)]
    write_clients: usize,
    /// Postgres server (a fresh database is created on it and dropped after).
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    postgres: String,
    #[arg(long, env = "TEST_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// --quick (a small dataset and short phases), --out FILE.
    #[command(flatten)]
    run: contract::bench::BenchFlags,
}

fn stage1_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("stage-1");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build --release -p stage-1`",
        bin.display()
    );
    bin
}

fn seed(bin: &Path, args: &Args, storage: &[&str]) -> f64 {
    let started = Instant::now();
    let status = Command::new(bin)
        .arg("seed")
        .args(storage)
        .args(args.dataset.seed_args())
        .status()
        .expect("run seed");
    assert!(status.success(), "{} seed failed", bin.display());
    started.elapsed().as_secs_f64()
}

/// `wrk` throughput for `url` (None when wrk is not installed).
fn wrk(url: &str, secs: u64, clients: usize, token: Option<&str>) -> Option<f64> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{clients}"), &format!("-d{secs}s")]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        panic!("wrk saw errors on {url}: {text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The write-heavy mix: per client, 10 of 20 requests toggle a like, 9
/// toggle a follow, 1 uploads a small photo. Also measures the CPU the
/// server side used per write: all of the machine's, less the generator's.
async fn write_mix(url: &str, sessions: Vec<SeededSession>, args: &Args) -> Value {
    let photo = png(64, 48);
    let (busy0, own0) = (
        machine_busy_seconds(),
        process_cpu_seconds(std::process::id()),
    );
    let (url, users, photos) = (
        url.to_owned(),
        args.dataset.users as u64,
        args.dataset.photos as u64,
    );
    let result = closed_loop(
        args.write_clients,
        Duration::from_secs(args.secs),
        move |client, c, i| {
            let session = &sessions[c % sessions.len()];
            let me = session.user_id as u64;
            let pick = (c as u64)
                .wrapping_mul(1_000_003)
                .wrapping_add(i as u64 * 7_919);
            let on = (i / 20) % 2 == 0; // alternate do / undo rounds, so rows stay bounded
            let req = match i % 20 {
                0..=9 => {
                    let path = format!("{url}/api/photos/{}/like", 1 + pick % photos);
                    if on {
                        client.post(path)
                    } else {
                        client.delete(path)
                    }
                }
                10..=18 => {
                    let target = match 1 + pick % users {
                        t if t == me => 1 + t % users, // never a self-follow
                        t => t,
                    };
                    let path = format!("{url}/api/users/{target}/follow");
                    if on {
                        client.post(path)
                    } else {
                        client.delete(path)
                    }
                }
                _ => {
                    let form = reqwest::multipart::Form::new()
                        .part(
                            "photo",
                            reqwest::multipart::Part::bytes(photo.clone()).file_name("p.png"),
                        )
                        .text("caption", "bench");
                    client.post(format!("{url}/api/photos")).multipart(form)
                }
            };
            req.bearer_auth(&session.token)
        },
    )
    .await;
    let server_cpu =
        (machine_busy_seconds() - busy0) - (process_cpu_seconds(std::process::id()) - own0);
    let mut v = result.to_json();
    v["writesPerSec"] = json!(result.rps());
    v["serverSideCpuUsPerWrite"] = json!(server_cpu * 1e6 / result.requests.max(1) as f64);
    v
}

#[tokio::main]
async fn main() {
    let mut args = Args::parse();
    if args.run.quick {
        args.dataset = contract::bench::DatasetFlags::QUICK;
        args.secs = 2;
        args.write_clients = args.write_clients.min(16);
    }
    let out = args.run.out_or("bench-stage2.json");
    let stage1 = stage1_binary();
    let mut suffix = [0u8; 5];
    rand::rng().fill_bytes(&mut suffix);
    let name = format!("minigram_bench_{}", hex::encode(suffix));
    let prefix = format!("mgbench:{name}");
    let db_url = format!("{}/{name}", args.postgres);
    let data2 = tempfile::tempdir().unwrap();
    let data1 = tempfile::tempdir().unwrap();
    let data2_s = data2.path().to_str().unwrap().to_owned();
    let storage2 = [
        "--database-url",
        &db_url,
        "--redis-url",
        &args.redis,
        "--redis-prefix",
        &prefix,
        "--data-dir",
        &data2_s,
    ];

    eprintln!("bench 1/5: seeding stage 2 ({})", args.dataset.describe());
    let seed2_secs = seed(Path::new(STAGE2), &args, &storage2);
    eprintln!("bench 2/5: seeding stage 1 with the same dataset");
    let seed1_secs = seed(
        &stage1,
        &args,
        &["--data-dir", data1.path().to_str().unwrap()],
    );

    let result = async {
        let mut serve2: Vec<&str> = vec!["--listen", "127.0.0.1:0"];
        serve2.extend_from_slice(&storage2);
        let server = Process::start(Path::new(STAGE2), &serve2);
        let tokens = seeded_tokens(&server.url, 16, args.dataset.users).await;
        let client = reqwest::Client::new();
        for t in &tokens {
            let res = client
                .get(format!("{}/api/feed", server.url))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "warming the feed cache failed");
        }

        eprintln!(
            "bench 3/5: GET /health vs GET /api/feed (warm cache), then feed with metrics off and on again; {} clients, {} s each",
            args.clients, args.secs
        );
        let phase = Duration::from_secs(args.secs);
        let health_url = format!("{}/health", server.url);
        let cpu0 = process_cpu_seconds(server.pid());
        let trivial = closed_loop(args.clients, phase, move |c, _, _| c.get(&health_url)).await;
        let cpu1 = process_cpu_seconds(server.pid());
        let feed_url = format!("{}/api/feed", server.url);
        let feed_tokens = tokens.clone();
        let feed = closed_loop(args.clients, phase, move |c, client, _| {
            c.get(&feed_url)
                .bearer_auth(&feed_tokens[client % feed_tokens.len()])
        })
        .await;
        let cpu2 = process_cpu_seconds(server.pid());

        // The cost of measuring: the same feed load on a second process with
        // the metrics middleware off, then on the first again.
        let mut serve_off = serve2.clone();
        serve_off.extend_from_slice(&["--metrics", "off"]);
        let server_off = Process::start(Path::new(STAGE2), &serve_off);
        let feed_load = |url: String| {
            let tokens = tokens.clone();
            closed_loop(args.clients, phase, move |c, client, _| {
                c.get(&url).bearer_auth(&tokens[client % tokens.len()])
            })
        };
        // Alternate off, on, off, on after the first "on" run, so that drift
        // over time (caches, the machine) weighs on both sides alike.
        let (on_url, off_url) = (format!("{}/api/feed", server.url), format!("{}/api/feed", server_off.url));
        let mut on_runs = vec![feed.rps()];
        let mut off_runs = Vec::new();
        for _ in 0..2 {
            off_runs.push(feed_load(off_url.clone()).await.rps());
            on_runs.push(feed_load(on_url.clone()).await.rps());
        }
        drop(server_off);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (on_rps, off_rps) = (mean(&on_runs), mean(&off_runs));
        let metrics_cost = json!({
            "feedRpsMetricsOn": on_rps,
            "feedRpsMetricsOff": off_rps,
            "runsOn": on_runs,
            "runsOff": off_runs,
            "slowdown": 1.0 - on_rps / off_rps,
            "targetSlowdownAtMost": 0.05,
        });
        let wrk_trivial = wrk(
            &format!("{}/health", server.url),
            args.secs,
            args.clients,
            None,
        );
        let wrk_feed = wrk(
            &format!("{}/api/feed", server.url),
            args.secs,
            args.clients,
            Some(&tokens[0]),
        );

        eprintln!(
            "bench 4/5: write mix on stage 2, {} clients, {} s",
            args.write_clients, args.secs
        );
        let writers = seeded_sessions(&server.url, args.write_clients, args.dataset.users).await;
        let writes2 = write_mix(&server.url, writers, &args).await;
        drop(server);

        eprintln!(
            "bench 5/5: write mix on stage 1, {} clients, {} s",
            args.write_clients, args.secs
        );
        let server1 = Process::start(
            &stage1,
            &[
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data1.path().to_str().unwrap(),
            ],
        );
        let writers = seeded_sessions(&server1.url, args.write_clients, args.dataset.users).await;
        let writes1 = write_mix(&server1.url, writers, &args).await;
        drop(server1);

        json!({
            "read": {
                "clients": args.clients,
                "generator": "closed-loop reqwest clients (contract::load)",
                "trivial": trivial.to_json(),
                "feed": feed.to_json(),
                "ratio": feed.rps() / trivial.rps(),
                "targetRatio": 0.7,
                "serverCpuUsPerRequest": {
                    "trivial": (cpu1 - cpu0) * 1e6 / trivial.requests.max(1) as f64,
                    "feed": (cpu2 - cpu1) * 1e6 / feed.requests.max(1) as f64,
                },
                "wrk": {"trivialRps": wrk_trivial, "feedRps": wrk_feed,
                        "ratio": wrk_trivial.zip(wrk_feed).map(|(t, f)| f / t)},
            },
            "writes": {"clients": args.write_clients, "stage2": writes2, "stage1": writes1},
            "metricsCost": metrics_cost,
        })
    }
    .await;
    let database_url = format!("{}/{name}", args.postgres);
    if let Err(e) = stage_2::cleanup::drop_data(&database_url, &args.redis, &prefix).await {
        eprintln!("bench cleanup: {e:#}");
    }

    let report = json!({
        "schema": "minigram.bench-stage2/1",
        "command": "cargo build --release -p stage-1 && cargo bench -p stage-2",
        "commit": measure::machine::git_commit(),
        "machine": measure::machine::Machine::current(),
        "quick": args.run.quick,
        "dataset": args.dataset.json(),
        "seed": {"stage2Seconds": seed2_secs, "stage1Seconds": seed1_secs, "targetSeconds": 60.0},
        "results": result,
    });
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap() + "\n").unwrap();

    let r = &report["results"];
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "\nstage-2 benchmark (commit {})",
        report["commit"].as_str().unwrap()
    );
    println!("{:<52} {:>12}", "measure", "value");
    println!("{:<52} {:>10.1} s", "seed stage 2 (COPY)", seed2_secs);
    println!(
        "{:<52} {:>10.0}/s",
        "GET /health (trivial handler)",
        f(&r["read"]["trivial"]["rps"])
    );
    println!(
        "{:<52} {:>10.0}/s",
        "GET /api/feed, warm cache",
        f(&r["read"]["feed"]["rps"])
    );
    println!(
        "{:<52} {:>12.2}",
        "feed / trivial (target >= 0.70)",
        f(&r["read"]["ratio"])
    );
    println!(
        "{:<52} {:>10.0} µs",
        "server CPU per trivial request",
        f(&r["read"]["serverCpuUsPerRequest"]["trivial"])
    );
    println!(
        "{:<52} {:>10.0} µs",
        "server CPU per feed request",
        f(&r["read"]["serverCpuUsPerRequest"]["feed"])
    );
    if r["read"]["wrk"]["ratio"].is_number() {
        println!(
            "{:<52} {:>10.0}/s",
            "wrk: GET /health",
            f(&r["read"]["wrk"]["trivialRps"])
        );
        println!(
            "{:<52} {:>10.0}/s",
            "wrk: GET /api/feed (one viewer)",
            f(&r["read"]["wrk"]["feedRps"])
        );
        println!(
            "{:<52} {:>12.2}",
            "wrk: feed / trivial",
            f(&r["read"]["wrk"]["ratio"])
        );
    }
    println!(
        "{:<52} {:>10.0}/s",
        "feed, metrics on (mean of three runs)",
        f(&r["metricsCost"]["feedRpsMetricsOn"])
    );
    println!(
        "{:<52} {:>10.0}/s",
        "feed, metrics off (mean of two runs)",
        f(&r["metricsCost"]["feedRpsMetricsOff"])
    );
    println!(
        "{:<52} {:>11.1}%",
        "cost of measuring (target <= 5%)",
        f(&r["metricsCost"]["slowdown"]) * 100.0
    );
    for stage in ["stage2", "stage1"] {
        let w = &r["writes"][stage];
        println!(
            "{:<52} {:>10.0}/s",
            format!("{stage}: writes ({} clients)", args.write_clients),
            f(&w["writesPerSec"])
        );
        println!(
            "{:<52} {:>9.2} ms",
            format!("{stage}: write p50 / p99 = {:.2} ms /", f(&w["p50Ms"])),
            f(&w["p99Ms"])
        );
        println!(
            "{:<52} {:>9.2} ms",
            format!("{stage}: mean storage time of a write (db)"),
            f(&w["dbMeanMs"])
        );
        println!(
            "{:<52} {:>9.2} ms",
            format!("{stage}: mean server time of a write (app)"),
            f(&w["serverMeanMs"])
        );
        println!(
            "{:<52} {:>10.0} µs",
            format!("{stage}: server-side CPU per write (app + databases)"),
            f(&w["serverSideCpuUsPerWrite"])
        );
        println!(
            "{:<52} {:>12}",
            format!("{stage}: failed writes"),
            w["errors"]
        );
    }
    println!("\nwrote {}", out.display());
}
