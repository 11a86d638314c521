//! `loadtests`: Goose user journeys against a Minigram stage, and a
//! breaking-point finder that says what broke and why.
//!
//! Every run writes one JSON result file (`docs/results-schema.md`,
//! `minigram.loadtest/1`) with Goose's HTML report beside it, and prints a
//! short table. The file is written to a temporary name and renamed when
//! the run is complete, so a half-finished run never looks like a result.

mod acks;
mod calibrate;
mod journeys;
mod lab;
mod step;
mod verdict;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

use journeys::JourneyConfig;
use step::Step;
use verdict::Slo;

const EXAMPLES: &str = "Examples:
  loadtests smoke --host http://127.0.0.1:8080
  loadtests breaking --host http://127.0.0.1:8080 --max-users 512 --seeded-users 10000
  loadtests breaking --host http://127.0.0.1:8081 --host http://127.0.0.1:8082 --slo p95=300ms,errors=0.5%
  loadtests load --host http://127.0.0.1:8080 --users 64 --duration 60
  loadtests spike --host http://127.0.0.1:8080 --users 16 --spike-users 256
  loadtests soak --host http://127.0.0.1:8080 --users 32 --duration 600
  loadtests load --host http://127.0.0.1:8080 --mix writes --think-ms 0-0 --ack-log acks.jsonl
  loadtests verify --host http://127.0.0.1:8080 --ack-log acks.jsonl
  loadtests lab list
  loadtests lab stage1-vs-stage2";

#[derive(Debug, Parser)]
#[command(name = "loadtests", version, about = "Goose user journeys against Minigram; find where a stage breaks and why", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// A few users for a few seconds; every request name must succeed (CI).
    Smoke(Common),
    /// A steady load: `--users` for `--duration` seconds.
    Load(Common),
    /// A step ladder of users, then bisection, until the SLO breaks.
    Breaking(Breaking),
    /// A steady load for a long time, in steps: latency drift and memory growth.
    Soak(Common),
    /// A sudden jump to `--spike-users` and back: the error burst and the time to recover.
    Spike(Spike),
    /// Runs a lab experiment end to end: fresh storage, seeded dataset,
    /// servers, the breaking-point search per variant, a report
    /// (`loadtests lab list` names the experiments).
    Lab(lab::LabArgs),
    /// Checks that every write in an `--ack-log` is in a server's data (e.g.
    /// after a crash and restart); exits 1 if any is missing.
    Verify(acks::VerifyArgs),
    /// The generator's own CPU per request (Goose), next to wrk's on the
    /// same endpoint (`GET /api/explore`), in the same session.
    Calibrate(Common),
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// A Minigram server; repeat to spread users over several (e.g. two stage-2 processes).
    #[arg(long = "host", required = true)]
    pub hosts: Vec<String>,
    /// Result file (default: a new file under results/).
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Concurrent simulated users.
    #[arg(long, default_value_t = 8)]
    pub users: usize,
    /// Seconds of measured load (per step for breaking, in total for load and soak).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seeded accounts user1..userN that returning users log in to (the
    /// demo dataset has 12).
    #[arg(long, default_value_t = 12)]
    pub seeded_users: usize,
    /// Think time between a user's actions, milliseconds, as MIN-MAX.
    #[arg(long, default_value = "200-800")]
    pub think_ms: String,
    /// The service level objective, e.g. `p95=500ms,errors=1%`.
    #[arg(long, default_value = "p95=500ms,errors=1%")]
    pub slo: String,
    /// Which people, in which proportions (`writes`: the crash test's mix).
    #[arg(long, value_enum, default_value = "default")]
    pub mix: journeys::Mix,
    /// Append every acknowledged (2xx) write to FILE, one JSON line each,
    /// for `loadtests verify`.
    #[arg(long, value_name = "FILE")]
    pub ack_log: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
struct Breaking {
    #[command(flatten)]
    common: Common,
    /// Seconds of each step (a fresh, independent measurement).
    #[arg(long, default_value_t = 20)]
    step_secs: u64,
    /// The ladder doubles users from `--users` up to this.
    #[arg(long, default_value_t = 512)]
    max_users: usize,
    /// Bisection steps between the last passing and the first failing step.
    #[arg(long, default_value_t = 3)]
    bisect: usize,
}

#[derive(Debug, Clone, Args)]
struct Spike {
    #[command(flatten)]
    common: Common,
    /// Users during the spike.
    #[arg(long, default_value_t = 256)]
    spike_users: usize,
    /// Seconds of each phase (baseline, spike); recovery is watched in 5 s steps.
    #[arg(long, default_value_t = 15)]
    step_secs: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtests: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub fn think(spec: &str) -> anyhow::Result<(Duration, Duration)> {
    let (a, b) = spec
        .split_once('-')
        .with_context(|| format!("bad --think-ms {spec:?}: use MIN-MAX, e.g. 200-800"))?;
    let (a, b): (u64, u64) = (
        a.trim()
            .parse()
            .with_context(|| format!("bad --think-ms {spec:?}"))?,
        b.trim()
            .parse()
            .with_context(|| format!("bad --think-ms {spec:?}"))?,
    );
    anyhow::ensure!(a <= b, "bad --think-ms {spec:?}: MIN is above MAX");
    Ok((Duration::from_millis(a), Duration::from_millis(b)))
}

/// Checks the options and every host before any load is sent.
pub async fn prepare(c: &Common) -> anyhow::Result<(Slo, JourneyConfig, Vec<Value>)> {
    let slo: Slo = c.slo.parse()?;
    anyhow::ensure!(c.users > 0, "--users must be at least 1");
    anyhow::ensure!(c.duration > 0, "--duration must be at least 1 second");
    anyhow::ensure!(c.seeded_users > 0, "--seeded-users must be at least 1");
    let journeys = JourneyConfig {
        seeded_users: c.seeded_users,
        think: think(&c.think_ms)?,
        mix: c.mix,
    };
    let client = reqwest::Client::new();
    let mut servers = Vec::new();
    for h in &c.hosts {
        anyhow::ensure!(
            h.starts_with("http://") || h.starts_with("https://"),
            "--host {h:?} must start with http://"
        );
        servers.push(step::server_metrics(&client, h.trim_end_matches('/')).await?);
    }
    Ok((slo, journeys, servers))
}

pub fn default_out(mode: &str, stage: &str) -> PathBuf {
    let stamp = minigram::machine::utc_now().replace([':', '-'], "");
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../results"))
        .join(format!("loadtest-{mode}-{stage}-{stamp}.json"))
}

fn report_path(out: &Path) -> PathBuf {
    out.with_extension("html")
}

/// Writes the result atomically: a temporary file, then a rename.
pub fn write_result(out: &Path, value: &Value) -> anyhow::Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = out.with_extension("json.partial");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Everything one result file says.
pub struct Record<'a> {
    pub mode: &'a str,
    /// The journey mix.
    pub mix: journeys::Mix,
    pub stage: &'a str,
    pub hosts: &'a [String],
    pub slo: &'a Slo,
    pub dataset: Value,
    pub steps: &'a [Step],
    pub breaking_point: &'a Option<Value>,
    pub summary: &'a Value,
    pub report: &'a Path,
    /// `{name, variant, change}` when the run is part of a lab experiment.
    pub experiment: Option<Value>,
}

/// A `minigram.loadtest/1` result (docs/results-schema.md).
pub fn result_json(r: &Record) -> Value {
    let client_total: u64 = r.steps.iter().map(|s| s.client_requests).sum();
    let server_total: u64 = r.steps.iter().map(|s| s.server_requests).sum();
    json!({
        "schema": "minigram.loadtest/1",
        "stage": r.stage,
        "commit": minigram::machine::git_commit(),
        "machine": minigram::machine::Machine::current(),
        "mode": r.mode,
        "mix": r.mix.name(),
        "startedAt": minigram::machine::utc_now(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "hosts": r.hosts,
        "slo": r.slo.to_json(),
        "dataset": r.dataset,
        "experiment": r.experiment,
        "steps": r.steps.iter().map(step::to_json).collect::<Vec<_>>(),
        "breakingPoint": r.breaking_point,
        "requestCounts": {
            "client": client_total,
            "server": server_total,
            "agreement": if server_total > 0 { client_total as f64 / server_total as f64 } else { 0.0 },
        },
        "coordinatedOmission": "closed model with think times; percentiles use Goose's --co-mitigation average",
        "summary": r.summary,
        "htmlReport": r.report.file_name().map(|f| f.to_string_lossy().into_owned()),
    })
}

pub fn print_table(steps: &[Step]) {
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "users", "req/s", "errors", "p50 ms", "p95 ms", "p99 ms", "gen CPU", "rest CPU"
    );
    for s in steps {
        println!(
            "{:>6} {:>9.1} {:>7.2}% {:>8.1} {:>8.1} {:>8.1} {:>8.0}% {:>8.0}%",
            s.users,
            s.rps,
            s.error_rate * 100.0,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.generator_cpu * 100.0,
            s.rest_of_machine_cpu * 100.0
        );
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    if let Mode::Calibrate(c) = &cli.mode {
        return calibrate::run(c).await;
    }
    if let Mode::Verify(v) = &cli.mode {
        return acks::run(v).await;
    }
    if let Mode::Lab(l) = &cli.mode {
        return lab::run(l.clone()).await;
    }
    let (mode, common) = match &cli.mode {
        Mode::Smoke(c) => ("smoke", c.clone()),
        Mode::Load(c) => ("load", c.clone()),
        Mode::Soak(c) => ("soak", c.clone()),
        Mode::Breaking(b) => ("breaking", b.common.clone()),
        Mode::Spike(s) => ("spike", s.common.clone()),
        Mode::Calibrate(_) | Mode::Verify(_) | Mode::Lab(_) => unreachable!("handled above"),
    };
    if let Mode::Breaking(b) = &cli.mode {
        anyhow::ensure!(b.max_users > 0, "--max-users must be at least 1");
        anyhow::ensure!(b.step_secs > 0, "--step-secs must be at least 1");
    }
    let (slo, journeys, servers) = prepare(&common).await?;
    let hosts: Vec<String> = common
        .hosts
        .iter()
        .map(|h| h.trim_end_matches('/').to_owned())
        .collect();
    let stage = servers[0]["stage"].as_str().unwrap_or("unknown").to_owned();
    if let Some(log) = &common.ack_log {
        acks::open(log)?;
    }
    let out = common
        .json_out
        .clone()
        .unwrap_or_else(|| default_out(mode, &stage));
    let report = report_path(&out);
    eprintln!(
        "loadtests {mode} against {stage} at {}; SLO {slo}",
        hosts.join(", ")
    );

    let single = matches!(cli.mode, Mode::Smoke(_) | Mode::Load(_));
    let plan = step::planner(&hosts, journeys, &report, single);
    let mut extra = json!({});
    let (steps, breaking_point, ok) = match &cli.mode {
        Mode::Smoke(_) | Mode::Load(_) => {
            let secs = if mode == "smoke" {
                common.duration.min(20)
            } else {
                common.duration
            };
            eprintln!("step 1/1: {} users for {secs} s", common.users);
            let s = step::run(plan(common.users, secs, true)).await?;
            let ok = if mode == "smoke" {
                verdict::smoke_ok(&s)
            } else {
                Ok(())
            };
            if let Err(why) = &ok {
                eprintln!("smoke FAILED: {why}");
            }
            (vec![s], None, ok.is_ok())
        }
        Mode::Calibrate(_) | Mode::Verify(_) | Mode::Lab(_) => unreachable!("handled above"),
        Mode::Soak(_) => {
            let parts = (common.duration / 30).clamp(2, 20);
            let secs = common.duration / parts;
            let mut steps = Vec::new();
            for i in 0..parts {
                eprintln!(
                    "step {}/{parts}: {} users for {secs} s",
                    i + 1,
                    common.users
                );
                steps.push(step::run(plan(common.users, secs, i + 1 == parts)).await?);
            }
            extra = verdict::soak_summary(&steps);
            (steps, None, true)
        }
        Mode::Spike(sp) => {
            let (steps, summary) =
                verdict::spike(&plan, common.users, sp.spike_users, sp.step_secs, &slo).await?;
            extra = summary;
            (steps, None, true)
        }
        Mode::Breaking(b) => {
            let (steps, bp) = verdict::breaking(
                &plan,
                common.users,
                b.max_users,
                b.step_secs,
                b.bisect,
                &slo,
            )
            .await?;
            (steps, bp, true)
        }
    };

    let client_total: u64 = steps.iter().map(|s| s.client_requests).sum();
    let server_total: u64 = steps.iter().map(|s| s.server_requests).sum();
    let result = result_json(&Record {
        mode,
        mix: common.mix,
        stage: &stage,
        hosts: &hosts,
        slo: &slo,
        // What the tool knows of the dataset: the seeded accounts it used.
        dataset: json!({"users": common.seeded_users}),
        steps: &steps,
        breaking_point: &breaking_point,
        summary: &extra,
        report: &report,
        experiment: None,
    });
    write_result(&out, &result)?;

    println!();
    print_table(&steps);
    if let Some(bp) = &breaking_point {
        println!(
            "\nbreaking point: {} users ({:.1} req/s) — {}; saturated: {}",
            bp["users"],
            bp["rps"].as_f64().unwrap_or(0.0),
            bp["brokenBy"].as_str().unwrap_or(""),
            bp["saturated"].as_str().unwrap_or("")
        );
    } else if mode == "breaking" {
        println!("\nthe SLO held at every step up to --max-users");
    }
    if !extra.as_object().is_some_and(|o| o.is_empty()) {
        println!("\n{}", serde_json::to_string_pretty(&extra)?);
    }
    println!(
        "client requests {client_total}, server requests {server_total} ({:.1} % apart)",
        if server_total > 0 {
            (client_total as f64 / server_total as f64 - 1.0).abs() * 100.0
        } else {
            0.0
        }
    );
    println!("wrote {} and {}", out.display(), report.display());
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
