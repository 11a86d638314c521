//! `calibrate`: what does the load generator itself cost? Goose runs
//! `GET /api/explore` with no think time and measures its own CPU per
//! request; then `wrk` (when installed) runs against the same endpoint with
//! the same connection count, its CPU read from /proc while it runs. A
//! breaking-point verdict must know this: on a small machine the generator
//! competes with the server for the same cores.

use anyhow::Context;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::step::{self, Plan};
use crate::{Common, default_out, prepare, write_result};

/// Runs wrk and samples its CPU time until it exits: (req/s, CPU seconds).
fn wrk(url: &str, connections: usize, secs: u64) -> anyhow::Result<Option<(f64, f64)>> {
    let child = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            url,
        ])
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return Ok(None); // not installed
    };
    let pid = child.id();
    let mut cpu = 0.0;
    loop {
        let now = measure::machine::process_cpu_seconds(pid);
        if now > 0.0 {
            cpu = now;
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(!text.contains("Non-2xx"), "wrk saw errors: {text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context("wrk printed no Requests/sec")?;
    Ok(Some((rps, cpu)))
}

pub async fn run(c: &Common) -> anyhow::Result<std::process::ExitCode> {
    let (_, journeys, servers) = prepare(c, false).await?;
    let host = c.hosts[0].trim_end_matches('/').to_owned();
    let stage = servers[0]["stage"].as_str().unwrap_or("unknown").to_owned();
    eprintln!(
        "calibrate 1/2: Goose, {} users, GET /api/explore, {} s",
        c.users, c.duration
    );
    let hosts = vec![host.clone()];
    let s = step::run(Plan {
        hosts: &hosts,
        load: crate::step::Load::Users(c.users),
        secs: c.duration,
        journeys,
        report: None,
        include_warmup: true,
        explore_only: true,
        cpu_hosts: &[],
        settle: true,
    })
    .await?;
    let goose_us = s.generator_cpu_seconds * 1e6 / s.client_requests.max(1) as f64;
    eprintln!(
        "calibrate 2/2: wrk, {} connections, same endpoint, {} s",
        c.users, c.duration
    );
    let url = format!("{host}/api/explore?limit=20");
    let w = tokio::task::spawn_blocking({
        let (url, users, secs) = (url.clone(), c.users, c.duration);
        move || wrk(&url, users, secs)
    })
    .await??;
    let result = json!({
        "schema": "minigram.calibrate/1",
        "stage": stage,
        "commit": env!("MINIGRAM_BUILD_COMMIT"),
        "machine": measure::machine::Machine::current(),
        "startedAt": measure::machine::utc_now(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "endpoint": "GET /api/explore?limit=20",
        "connections": c.users,
        "goose": {"rps": s.rps, "errors": s.error_rate, "cpuSeconds": s.generator_cpu_seconds, "cpuUsPerRequest": goose_us},
        "wrk": w.map(|(rps, cpu)| json!({"rps": rps, "cpuSeconds": cpu, "cpuUsPerRequest": cpu * 1e6 / (rps * c.duration as f64).max(1.0)})),
    });
    let out = c
        .json_out
        .clone()
        .unwrap_or_else(|| default_out("calibrate", &stage));
    write_result(&out, &result)?;
    println!(
        "\n{:<36} {:>10} {:>16}",
        "generator", "req/s", "CPU µs/request"
    );
    println!(
        "{:<36} {:>10.0} {:>16.1}",
        "goose (journeys' generator)", s.rps, goose_us
    );
    match &result["wrk"] {
        serde_json::Value::Null => println!("wrk is not installed: apt-get install wrk to compare"),
        w => println!(
            "{:<36} {:>10.0} {:>16.1}",
            "wrk",
            w["rps"].as_f64().unwrap_or(0.0),
            w["cpuUsPerRequest"].as_f64().unwrap_or(0.0)
        ),
    }
    println!("wrote {}", out.display());
    Ok(std::process::ExitCode::SUCCESS)
}
