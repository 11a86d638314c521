//! A run's result file (`minigram.loadtest/1`, docs/results-schema.md):
//! what it holds, where it goes, how it is written (whole or not at all),
//! and the table a run prints of its steps.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use crate::Common;
use crate::journeys::{self, JourneyConfig};
use crate::slo::Slo;
use crate::step::{self, Step};

pub fn default_out(mode: &str, stage: &str) -> PathBuf {
    let stamp = measure::machine::utc_now().replace([':', '-'], "");
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../results"))
        .join(format!("loadtest-{mode}-{stage}-{stamp}.json"))
}

pub fn report_path(out: &Path) -> PathBuf {
    out.with_extension("html")
}

/// Writes the result whole or not at all.
pub fn write_result(out: &Path, value: &Value) -> anyhow::Result<()> {
    measure::files::write_json(out, value)
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
    /// How the load was made: [`load_model`].
    pub load: Value,
}

/// The result file's `load`: which model, and the people's shares.
pub fn load_model(c: &Common, journeys: &JourneyConfig) -> Value {
    json!({
        "model": if c.arrival_rate.is_some() { "open" } else { "closed" },
        "maxVisits": c.arrival_rate.map(|_| c.max_visits),
        "people": if c.mix.has_people() { c.people.min(c.seeded_users) } else { 0 },
        "newcomerShare": journeys.shares.newcomer,
        "signedOutShare": journeys.shares.signed_out,
        "logoutShare": journeys.shares.logout,
        "thinkMs": c.think_ms,
    })
}

/// A `minigram.loadtest/1` result (docs/results-schema.md).
pub fn result_json(r: &Record) -> Value {
    let client_total: u64 = r.steps.iter().map(|s| s.client_requests).sum();
    let server_total: u64 = r.steps.iter().map(|s| s.server_requests).sum();
    let sign_ins: f64 = r
        .steps
        .iter()
        .map(|s| s.sign_in_share * s.client_requests as f64)
        .sum();
    let open = r.load["model"] == "open";
    json!({
        "schema": "minigram.loadtest/1",
        "stage": r.stage,
        "commit": env!("MINIGRAM_BUILD_COMMIT"),
        "machine": measure::machine::Machine::current(),
        "mode": r.mode,
        "mix": r.mix.name(),
        "startedAt": measure::machine::utc_now(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "hosts": r.hosts,
        "slo": r.slo.to_json(),
        "load": r.load,
        "signInShare": if client_total > 0 { sign_ins / client_total as f64 } else { 0.0 },
        "dataset": r.dataset,
        "experiment": r.experiment,
        "steps": r.steps.iter().map(step::to_json).collect::<Vec<_>>(),
        "breakingPoint": r.breaking_point,
        "requestCounts": {
            "client": client_total,
            "server": server_total,
            "agreement": if server_total > 0 { client_total as f64 / server_total as f64 } else { 0.0 },
        },
        "coordinatedOmission": if open {
            "open model: visits start on schedule; percentiles are timed from each request's intended send time (a visit's first request from its scheduled start)"
        } else {
            "closed model with think times: a slow server is sent fewer requests, so latency under overload reads low (use the open model for that); percentiles are timed from each request's send"
        },
        "summary": r.summary,
        "htmlReport": r.report.file_name().map(|f| f.to_string_lossy().into_owned()),
    })
}

pub fn print_table(steps: &[Step]) {
    let open = steps.iter().any(|s| s.arrival_rate.is_some());
    println!(
        "{:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        if open { "visits/s" } else { "users" },
        "in prog.",
        "req/s",
        "errors",
        "sign-in",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "gen CPU",
        "rest CPU"
    );
    for s in steps {
        println!(
            "{:>8} {:>9.1} {:>9.1} {:>7.2}% {:>7.2}% {:>8.1} {:>8.1} {:>8.1} {:>8.0}% {:>8.0}%",
            s.level(),
            s.visits_in_progress.mean,
            s.rps,
            s.error_rate * 100.0,
            s.sign_in_share * 100.0,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.generator_cpu * 100.0,
            s.rest_of_machine_cpu * 100.0
        );
    }
}
