//! `loadtests`: Goose user journeys against a Minigram stage, and a
//! breaking-point finder that says what broke and why.
//!
//! Every run writes one JSON result file (`docs/results-schema.md`,
//! `minigram.loadtest/1`) with Goose's HTML report beside it, and prints a
//! short table. The file is written to a temporary name and renamed when
//! the run is complete, so a half-finished run never looks like a result.

mod acks;
mod arrivals;
mod calibrate;
mod fleet;
mod hostreport;
mod hosts;
mod journeys;
mod lab;
mod link;
mod people;
mod record;
mod servers;
mod slo;
mod step;
mod topology;
mod verdict;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

use journeys::{JourneyConfig, Shares};
use record::{
    Record, default_out, load_model, print_table, report_path, result_json, write_result,
};
use slo::Slo;
use step::Load;

const EXAMPLES: &str = "Examples:
  loadtests smoke --host http://127.0.0.1:8080
  loadtests breaking --host http://127.0.0.1:8080 --arrival-rate 8 --seeded-users 10000
  loadtests breaking --host http://127.0.0.1:8080 --max-users 512 --seeded-users 10000
  loadtests breaking --host http://127.0.0.1:8081 --host http://127.0.0.1:8082 --slo reads.p95=200ms,errors=0.5%
  loadtests load --host http://127.0.0.1:8080 --arrival-rate 50 --duration 60
  loadtests load --host http://127.0.0.1:8080 --users 64 --duration 60 --mix sign-in-every-visit
  loadtests spike --host http://127.0.0.1:8080 --users 16 --spike-users 256
  loadtests soak --host http://127.0.0.1:8080 --users 32 --duration 600
  loadtests load --host http://127.0.0.1:8080 --mix writes --think-ms 0-0 --ack-log acks.jsonl
  loadtests verify --host http://127.0.0.1:8080 --ack-log acks.jsonl
  loadtests lab list
  loadtests lab stage1-vs-stage2
  loadtests lab scale-out --topology app=0.1,postgres=0.6,redis=0.1,generator=0.5
  loadtests lab pool-size --topology app=0.3,postgres=0.4,redis=0.2,generator=0.45,rtt=0.5
  loadtests breaking --host http://127.0.0.1:8080 --arrival-rate 8 --generator-cpus 0.5
  loadtests hosts --cpus 0.3
  loadtests link --to 127.0.0.1:5432 --rtt-ms 2";

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
    /// A TCP proxy that adds a round-trip time (the lab's links between
    /// simulated hosts; this kernel has no netem).
    Link(link::LinkArgs),
    /// Checks that this machine can simulate hosts and that a CPU quota
    /// holds (busy processes in one host; prints what its cgroup counted).
    Hosts(hosts::CheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// A Minigram server; repeat to spread users over several (e.g. two stage-2 processes).
    #[arg(long = "host", required = true)]
    pub hosts: Vec<String>,
    /// Result file (default: a new file under results/).
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Closed model: concurrent simulated users, each visiting again after
    /// a visit (and a think time).
    #[arg(long, default_value_t = 8)]
    pub users: usize,
    /// Open model: visits started per second, on schedule whether or not
    /// earlier visits have finished (the breaking search ramps this instead
    /// of users).
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub arrival_rate: Option<f64>,
    /// Open model: the most visits in progress at once (the generator's
    /// slots, k6's maxVUs; each step gets 8 s worth of its rate, up to
    /// this); a visit that finds none free starts late, and its lateness
    /// counts as latency.
    #[arg(long, default_value_t = 2000)]
    pub max_visits: usize,
    /// People with sessions from earlier visits, signed in before the load
    /// (not measured): returning visits are theirs (at most --seeded-users).
    #[arg(long, default_value_t = 500)]
    pub people: usize,
    /// Share of visits that are a newcomer registering (default 0.01; smoke 0.25).
    #[arg(long, value_name = "SHARE", allow_negative_numbers = true)]
    pub newcomer_share: Option<f64>,
    /// Share of returning visits that start signed out and sign in (a new
    /// device, an expired session; default 0.02; smoke 0.25).
    #[arg(long, value_name = "SHARE", allow_negative_numbers = true)]
    pub signed_out_share: Option<f64>,
    /// Share of returning visits that end with a logout (default 0.02; smoke 0.25).
    #[arg(long, value_name = "SHARE", allow_negative_numbers = true)]
    pub logout_share: Option<f64>,
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
    /// The service level objective: a p95 per class of request (reads,
    /// writes, sign-in) and the error rate; `p95=500ms` sets every class.
    #[arg(long, default_value = slo::DEFAULT)]
    pub slo: String,
    /// Which people, in which proportions (`writes`: the crash test's mix).
    #[arg(long, value_enum, default_value = "default")]
    pub mix: journeys::Mix,
    /// Append every acknowledged (2xx) write to FILE, one JSON line each,
    /// for `loadtests verify`.
    #[arg(long, value_name = "FILE")]
    pub ack_log: Option<PathBuf>,
    /// Run the load generator inside a simulated host of this many cores
    /// (a cgroup CPU quota, as the lab's `generator` host; needs root): it
    /// can then take no more of the machine than that, and every step
    /// records what it used (`hostCpu`). The servers are yours to place.
    #[arg(long, value_name = "CORES")]
    pub generator_cpus: Option<f64>,
}

#[derive(Debug, Clone, Args)]
struct Breaking {
    #[command(flatten)]
    common: Common,
    /// Seconds of each step (a fresh, independent measurement).
    #[arg(long, default_value_t = 20)]
    step_secs: u64,
    /// The ladder doubles users from `--users` up to this (closed model).
    #[arg(long, default_value_t = 512)]
    max_users: usize,
    /// The ladder doubles visits/s from `--arrival-rate` up to this (open model).
    #[arg(long, default_value_t = 1024.0)]
    max_arrival_rate: f64,
    /// Bisection steps between the last passing and the first failing step.
    #[arg(long, default_value_t = 3)]
    bisect: usize,
    /// Seconds of each bisection step (default: --step-secs).
    #[arg(long)]
    bisect_secs: Option<u64>,
}

#[derive(Debug, Clone, Args)]
struct Spike {
    #[command(flatten)]
    common: Common,
    /// Users during the spike (closed model).
    #[arg(long, default_value_t = 256)]
    spike_users: usize,
    /// Visits/s during the spike (open model, with --arrival-rate).
    #[arg(long)]
    spike_arrival_rate: Option<f64>,
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

/// A share flag: `None` keeps the default; outside 0..=1 is refused.
fn share(flag: &str, v: Option<f64>, default: f64) -> anyhow::Result<f64> {
    let v = v.unwrap_or(default);
    anyhow::ensure!(
        (0.0..=1.0).contains(&v),
        "--{flag} {v} is not a share: use a number from 0 to 1 (e.g. 0.02 for 1 in 50)"
    );
    Ok(v)
}

impl Common {
    /// The visits' shares: the flags, else the mode's defaults.
    pub fn shares(&self, smoke: bool) -> anyhow::Result<Shares> {
        let d = if smoke {
            Shares::SMOKE
        } else {
            Shares::DEFAULT
        };
        Ok(Shares {
            newcomer: share("newcomer-share", self.newcomer_share, d.newcomer)?,
            signed_out: share("signed-out-share", self.signed_out_share, d.signed_out)?,
            logout: share("logout-share", self.logout_share, d.logout)?,
        })
    }

    /// The load of a step at `level`: visits/s (open model, when
    /// `--arrival-rate` is given) or users.
    pub fn load(&self, level: f64) -> Load {
        match self.arrival_rate {
            // Enough slots for visits of up to 8 s each at this rate (a
            // visit takes ~2-4 s with the default think times), at most
            // --max-visits: idle slots cost the generator memory and time.
            Some(_) => Load::Rate {
                per_sec: level,
                slots: ((level * 8.0).ceil() as usize).clamp(16, self.max_visits),
            },
            None => Load::Users(level.round().max(1.0) as usize),
        }
    }

    /// The first level of a run: `--arrival-rate` or `--users`.
    pub fn start_level(&self) -> f64 {
        self.arrival_rate.unwrap_or(self.users as f64)
    }
}

/// Checks the options and every host before any load is sent, then signs
/// in the people who come back (their sessions exist before the load).
pub async fn prepare(c: &Common, smoke: bool) -> anyhow::Result<(Slo, JourneyConfig, Vec<Value>)> {
    let slo: Slo = c.slo.parse()?;
    anyhow::ensure!(c.users > 0, "--users must be at least 1");
    if let Some(r) = c.arrival_rate {
        anyhow::ensure!(
            r > 0.0 && r.is_finite(),
            "--arrival-rate {r} must be above 0 visits per second"
        );
    }
    anyhow::ensure!(c.max_visits > 0, "--max-visits must be at least 1");
    anyhow::ensure!(c.duration > 0, "--duration must be at least 1 second");
    anyhow::ensure!(c.seeded_users > 0, "--seeded-users must be at least 1");
    let journeys = JourneyConfig {
        seeded_users: c.seeded_users,
        think: think(&c.think_ms)?,
        mix: c.mix,
        shares: c.shares(smoke)?,
    };
    let client = reqwest::Client::new();
    let mut servers = Vec::new();
    for h in &c.hosts {
        anyhow::ensure!(
            h.starts_with("http://") || h.starts_with("https://"),
            "--host {h:?} must start with http://"
        );
        servers.push(step::server_metrics(&client, h.trim_end_matches('/'), 0).await?);
    }
    let hosts: Vec<String> = c
        .hosts
        .iter()
        .map(|h| h.trim_end_matches('/').to_owned())
        .collect();
    let people = if c.mix.has_people() {
        c.people.min(c.seeded_users)
    } else {
        0
    };
    if people > 0 {
        eprintln!(
            "signing in {people} people who visited before (their sessions last; not measured)"
        );
    }
    people::sign_in_before(&hosts, people).await?;
    Ok((slo, journeys, servers))
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
    if let Mode::Hosts(h) = &cli.mode {
        return hosts::run_check(h);
    }
    if let Mode::Link(l) = &cli.mode {
        let l = l.clone();
        return tokio::task::spawn_blocking(move || link::run(&l)).await?;
    }
    let (mode, common) = match &cli.mode {
        Mode::Smoke(c) => ("smoke", c.clone()),
        Mode::Load(c) => ("load", c.clone()),
        Mode::Soak(c) => ("soak", c.clone()),
        Mode::Breaking(b) => ("breaking", b.common.clone()),
        Mode::Spike(s) => ("spike", s.common.clone()),
        Mode::Calibrate(_) | Mode::Verify(_) | Mode::Lab(_) | Mode::Link(_) | Mode::Hosts(_) => {
            unreachable!("handled above")
        }
    };
    if let Mode::Breaking(b) = &cli.mode {
        anyhow::ensure!(b.max_users > 0, "--max-users must be at least 1");
        anyhow::ensure!(
            b.max_arrival_rate > 0.0,
            "--max-arrival-rate must be above 0"
        );
        anyhow::ensure!(b.step_secs > 0, "--step-secs must be at least 1");
    }
    if let Mode::Spike(sp) = &cli.mode
        && let Some(r) = sp.spike_arrival_rate
    {
        anyhow::ensure!(r > 0.0, "--spike-arrival-rate must be above 0");
        anyhow::ensure!(
            common.arrival_rate.is_some(),
            "--spike-arrival-rate needs --arrival-rate (the open model)"
        );
    }
    if let Some(cpus) = common.generator_cpus {
        let cores = measure::machine::machine_cores() as f64;
        anyhow::ensure!(
            (0.1..=cores).contains(&cpus),
            "--generator-cpus must be between 0.1 and the machine's {cores} cores"
        );
        hosts::check()?;
    }
    // Before prepare: the people's sign-ins are acknowledged writes too.
    if let Some(log) = &common.ack_log {
        acks::open(log)?;
    }
    let (slo, journeys, servers) = prepare(&common, mode == "smoke").await?;
    let load_json = load_model(&common, &journeys);
    let hosts: Vec<String> = common
        .hosts
        .iter()
        .map(|h| h.trim_end_matches('/').to_owned())
        .collect();
    let stage = servers[0]["stage"].as_str().unwrap_or("unknown").to_owned();
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
    // The generator's own host, if asked for: it runs the load (not the
    // sign-ins before it) inside its budget.
    let budget = common.generator_cpus.map(|cpus| hosts::Budget {
        cpus: Some(cpus),
        memory_mib: None,
    });
    let generator = match budget {
        Some(b) => {
            let mut group = hosts::Hosts::new()?;
            let host = group.add("generator", b)?;
            Some((group, host))
        }
        None => None,
    };
    let cpu_hosts = generator.as_ref().map_or(&[][..], |(g, _)| g.all());
    let plan = step::planner(&hosts, journeys, &report, single, cpu_hosts);
    let inside = match &generator {
        Some((g, host)) => Some(g.enter(host)?),
        None => None,
    };
    let mut extra = json!({});
    let (steps, breaking_point, ok) = match &cli.mode {
        Mode::Smoke(_) | Mode::Load(_) => {
            let secs = if mode == "smoke" {
                common.duration.min(20)
            } else {
                common.duration
            };
            let load = common.load(common.start_level());
            eprintln!("step 1/1: {} for {secs} s", load.describe());
            let s = step::run(plan(load, secs, true)).await?;
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
        Mode::Calibrate(_) | Mode::Verify(_) | Mode::Lab(_) | Mode::Link(_) | Mode::Hosts(_) => {
            unreachable!("handled above")
        }
        Mode::Soak(_) => {
            let parts = (common.duration / 30).clamp(2, 20);
            let secs = common.duration / parts;
            let mut steps = Vec::new();
            let load = common.load(common.start_level());
            for i in 0..parts {
                eprintln!("step {}/{parts}: {} for {secs} s", i + 1, load.describe());
                steps.push(step::run(plan(load, secs, i + 1 == parts)).await?);
            }
            extra = verdict::soak_summary(&steps);
            (steps, None, true)
        }
        Mode::Spike(sp) => {
            let spike_level = sp.spike_arrival_rate.unwrap_or(sp.spike_users as f64);
            let (steps, summary) = verdict::spike(
                &plan,
                common.load(common.start_level()),
                common.load(spike_level),
                sp.step_secs,
                &slo,
            )
            .await?;
            extra = summary;
            (steps, None, true)
        }
        Mode::Breaking(b) => {
            let max = match common.arrival_rate {
                Some(_) => b.max_arrival_rate,
                None => b.max_users as f64,
            };
            let (steps, bp) = verdict::breaking(
                &plan,
                &|level| common.load(level),
                common.start_level(),
                max,
                verdict::Steps {
                    ladder_secs: b.step_secs,
                    bisect_secs: b.bisect_secs.unwrap_or(b.step_secs),
                    bisect: b.bisect,
                },
                &slo,
            )
            .await?;
            (steps, bp, true)
        }
    };
    drop(inside);

    let client_total: u64 = steps.iter().map(|s| s.client_requests).sum();
    let server_total: u64 = steps.iter().map(|s| s.server_requests).sum();
    let mut result = result_json(&Record {
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
        load: load_json,
    });
    if let Some(b) = budget {
        result["topology"] = topology::generator_only(b);
    }
    write_result(&out, &result)?;

    println!();
    print_table(&steps);
    if let Some(bp) = &breaking_point {
        println!(
            "\nbreaking point: {} ({:.1} req/s) — {}; saturated: {}",
            match bp["arrivalRate"].as_f64() {
                Some(r) => format!("{r} visits/s"),
                None => format!("{} users", bp["users"]),
            },
            bp["rps"].as_f64().unwrap_or(0.0),
            bp["brokenBy"].as_str().unwrap_or(""),
            bp["saturated"].as_str().unwrap_or("")
        );
    } else if mode == "breaking" {
        println!("\nthe SLO held at every step of the ladder");
    }
    if !extra.as_object().is_some_and(|o| o.is_empty()) {
        println!("\n{}", serde_json::to_string_pretty(&extra)?);
    }
    let edges = steps
        .iter()
        .filter_map(|s| s.edge)
        .fold((0, 0), |(l, f), e| {
            (l + e.launch_requests, f + e.in_flight_at_start)
        });
    println!(
        "client requests {client_total}, server requests {server_total} ({:.1} % apart; the servers also counted {} requests of the seconds Goose's users launched in, which Goose resets out, and {} in flight as steps began)",
        if server_total > 0 {
            (client_total as f64 / server_total as f64 - 1.0).abs() * 100.0
        } else {
            0.0
        },
        edges.0,
        edges.1
    );
    println!("wrote {} and {}", out.display(), report.display());
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
