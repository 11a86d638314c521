//! What a topology run adds to a lab report: each host's CPU against its
//! budget, the USL over app hosts (scale-out), and round trips per
//! request derived from latency against the link's RTT (network-latency).
//!
//! Everything here reads the report's variants (`lab/report.rs` builds them from
//! the steps) and writes both the report's JSON and its Markdown.

use serde_json::{Value, json};

use crate::journeys::name;

fn cell(h: &Value) -> String {
    let cores = h["cores"].as_f64().unwrap_or(0.0);
    match (h["cpus"].as_f64(), h["budgetShare"].as_f64()) {
        (Some(b), Some(share)) => format!("{cores:.3} of {b:.2} ({:.0}%)", share * 100.0),
        _ => format!("{cores:.3} (no budget)"),
    }
}

/// "The hosts": each variant's topology and, per host, the CPU it used at
/// the last passing step and at the first failing one (cores of budget).
pub fn hosts_markdown(md: &mut String, variants: &[Value]) {
    if !variants.iter().any(|v| v["topology"].is_object()) {
        return;
    }
    md.push_str("### The hosts\n\nEach host is a cgroup with a CPU quota (period 10 ms); its CPU is the cgroup's own accounting over the step (all its processes and threads). Cores used of the budget, at the step the variant is compared at (its breaking point, or the fixed load) and at the first step that broke the SLO:\n\n| variant | hosts (cores promised) | host | at the breaking point | where the SLO broke |\n|---|---|---|---:|---:|\n");
    for v in variants {
        let label = v["label"].as_str().unwrap_or("");
        let topo = &v["topology"];
        let Some(at) = v["hostCpuAtBreakingPoint"].as_array() else {
            continue;
        };
        let failing = v["hostCpuWhereBroken"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (i, h) in at.iter().enumerate() {
            let name = h["name"].as_str().unwrap_or("");
            let broke = failing
                .iter()
                .find(|f| f["name"] == h["name"])
                .map_or("–".into(), cell);
            if i == 0 {
                md.push_str(&format!(
                    "| {label} | {} ({:.2} cores) | {name} | {} | {broke} |\n",
                    topo["text"].as_str().unwrap_or(""),
                    topo["cores"].as_f64().unwrap_or(0.0),
                    cell(h)
                ));
            } else {
                md.push_str(&format!("| | | {name} | {} | {broke} |\n", cell(h)));
            }
        }
    }
    md.push('\n');
}

/// The USL fitted to throughput at the SLO against app hosts (N = app
/// hosts, not users), with the breaking-point search's resolution as the
/// uncertainty: each point's throughput lies between the last passing
/// step's and the first failing step's, and σ, κ are refitted at every
/// corner of those intervals.
pub fn usl_over_hosts(variants: &[Value]) -> Value {
    // (app hosts, passing rps, failing rps)
    let points: Vec<(f64, f64, f64)> = variants
        .iter()
        .filter(|v| v["topology"].is_object() && v["stage"] == "stage-2")
        .filter_map(|v| {
            let n = v["processes"].as_f64()?;
            let pass = v["atBreakingPoint"]["rps"].as_f64()?;
            let fail = v["rpsWhereBroken"].as_f64().unwrap_or(pass).max(pass);
            v["breakingPoint"].is_object().then_some((n, pass, fail))
        })
        .collect();
    let mut ns: Vec<u64> = points.iter().map(|p| p.0 as u64).collect();
    ns.sort_unstable();
    ns.dedup();
    if ns.len() < 3 || ns.len() != points.len() {
        return Value::Null;
    }
    let Some(fit) = measure::usl::fit(&points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>())
    else {
        return Value::Null;
    };
    let (mut s_lo, mut s_hi, mut k_lo, mut k_hi) = (fit.sigma, fit.sigma, fit.kappa, fit.kappa);
    for corner in 0..(1u32 << points.len()) {
        let at: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .map(|(i, p)| (p.0, if corner & (1 << i) == 0 { p.1 } else { p.2 }))
            .collect();
        if let Some(f) = measure::usl::fit(&at) {
            s_lo = s_lo.min(f.sigma);
            s_hi = s_hi.max(f.sigma);
            k_lo = k_lo.min(f.kappa);
            k_hi = k_hi.max(f.kappa);
        }
    }
    let max_n = points.iter().map(|p| p.0).fold(0.0, f64::max);
    let one = points.iter().find(|p| p.0 == 1.0).map(|p| p.1);
    // A peak is predicted only inside twice the measured range: beyond
    // that the fit has no points to stand on.
    let peak = fit.peak_users.filter(|n| *n <= 2.0 * max_n);
    let degenerate = fit.sigma == 0.0 && fit.kappa == 0.0;
    json!({
        "n": "app hosts",
        "points": points.iter().map(|p| json!({"appHosts": p.0, "rps": p.1, "rpsWhereBroken": p.2})).collect::<Vec<_>>(),
        "lambda": fit.lambda,
        "sigma": fit.sigma,
        "sigmaRange": [s_lo, s_hi],
        "kappa": fit.kappa,
        "kappaRange": [k_lo, k_hi],
        "r2": fit.r2,
        "degenerate": degenerate,
        "peakAppHosts": peak,
        "peakRps": peak.map(|_| fit.peak_rps),
        "peakNote": match (fit.peak_users, peak) {
            (Some(_), Some(_)) => "within twice the measured range",
            (Some(_), None) => "beyond twice the measured range: not predicted",
            (None, _) => "no retrograde region fitted (κ = 0): no peak predicted",
        },
        "speedup": points.iter().map(|p| json!({
            "appHosts": p.0,
            "vsOne": one.map(|o| p.1 / o),
        })).collect::<Vec<_>>(),
    })
}

pub fn usl_markdown(md: &mut String, usl: &Value) {
    let Some(points) = usl["points"].as_array() else {
        return;
    };
    md.push_str("### Throughput against app hosts (USL, N = app hosts)\n\n| app hosts | req/s at the SLO (last passing step) | req/s where the SLO broke | vs one app host |\n|---:|---:|---:|---:|\n");
    let speed = usl["speedup"].as_array().cloned().unwrap_or_default();
    for (p, s) in points.iter().zip(&speed) {
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {} |\n",
            p["appHosts"],
            p["rps"].as_f64().unwrap_or(0.0),
            p["rpsWhereBroken"].as_f64().unwrap_or(0.0),
            s["vsOne"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.2}×"))
        ));
    }
    let range = |k: &str| {
        let r = usl[k].as_array().cloned().unwrap_or_default();
        format!(
            "{:.4}–{:.4}",
            r.first().and_then(Value::as_f64).unwrap_or(0.0),
            r.get(1).and_then(Value::as_f64).unwrap_or(0.0)
        )
    };
    md.push_str(&format!(
        "\nFitted to the passing points: σ = {:.4} (range over the search's resolution {}), κ = {:.4} ({}), R² = {:.3}{}; peak: {}.\n\n",
        usl["sigma"].as_f64().unwrap_or(0.0),
        range("sigmaRange"),
        usl["kappa"].as_f64().unwrap_or(0.0),
        range("kappaRange"),
        usl["r2"].as_f64().unwrap_or(0.0),
        if usl["degenerate"] == true {
            " (degenerate: σ = κ = 0, throughput grew in proportion over the measured range; the fit says nothing beyond it)"
        } else {
            ""
        },
        match usl["peakAppHosts"].as_f64() {
            Some(n) => format!(
                "{n:.1} app hosts, {:.0} req/s",
                usl["peakRps"].as_f64().unwrap_or(0.0)
            ),
            None => usl["peakNote"].as_str().unwrap_or("").to_owned(),
        }
    ));
}

/// The round trips each request makes in sequence, as a slope: p50 (ms)
/// against the link's RTT (ms), fitted by least squares over the variants.
/// A request that makes n round trips one after another slows by n × RTT.
pub fn round_trips(variants: &[Value]) -> Value {
    let with_rtt: Vec<(f64, &Value)> = variants
        .iter()
        .filter_map(|v| Some((v["topology"]["rttMs"].as_f64()?, v)))
        .collect();
    let mut rtts: Vec<f64> = with_rtt.iter().map(|p| p.0).collect();
    rtts.sort_by(f64::total_cmp);
    rtts.dedup();
    if rtts.len() < 2 {
        return Value::Null;
    }
    let mut names: Vec<String> = with_rtt
        .iter()
        .filter_map(|(_, v)| v["atBreakingPoint"]["requests"].as_object())
        .flat_map(|r| r.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    let rows: Vec<Value> = names
        .iter()
        .filter_map(|name| {
            let pts: Vec<(f64, f64)> = with_rtt
                .iter()
                .filter_map(|(r, v)| {
                    Some((*r, v["atBreakingPoint"]["requests"][name]["p50Ms"].as_f64()?))
                })
                .collect();
            (pts.len() >= 2).then(|| {
                let (slope, intercept) = least_squares(&pts);
                json!({
                    "request": name,
                    "p50Ms": pts.iter().map(|p| json!({"rttMs": p.0, "p50Ms": p.1})).collect::<Vec<_>>(),
                    "roundTrips": slope,
                    "p50AtZeroMs": intercept,
                    "fitR2": r_squared(&pts, slope, intercept),
                    "expected": expected(name),
                })
            })
        })
        .collect();
    json!({ "rttMs": rtts, "requests": rows })
}

/// Round trips to Postgres and Redis in sequence, read from stage 2's code
/// (stage-2/src/store/ and the handlers) with its defaults (feed cache
/// on): every signed-in request looks its session up in Redis (1; a feed
/// page reads the session with what is cached in one script); a
/// Postgres statement is 1 (under load a pooled connection is not pinged
/// before use: only one idle for over a second is, see
/// `Stage2Config::pg_ping_idle_after`); a Redis command, pipeline or
/// script is 1 (bb8 does not test connections on check-out here).
/// Reports made before this count (Postgres queries as 2) keep theirs.
fn expected(name: &str) -> Value {
    let (n, why) = match name {
        name::FEED => (
            2,
            "the journeys read 10 a page, not the 20 the cache keeps rendered: the session and the cached id list in one script, then one Postgres query for the page's photos (a miss costs 3: that script, one statement for the id window and the page, one script storing them)",
        ),
        name::FEED_OLDER => (
            2,
            "the session and the cached id list in one script, then one Postgres query for the page's photos",
        ),
        name::LIKE => (
            3,
            "session GET + one Postgres statement + the pipeline invalidating the liker's cache",
        ),
        name::FOLLOW => (
            3,
            "session GET + one Postgres statement (the check, the write and the count together) + the pipeline invalidating the follower's cache",
        ),
        name::LOGIN => (
            4,
            "strike check (EVAL) + credentials (1) + the session SET + clearing strikes (DEL); the hash is CPU, not a round trip",
        ),
        _ => return Value::Null,
    };
    json!({"roundTrips": n, "why": why})
}

/// Slope and intercept of the least-squares line through `pts`.
fn least_squares(pts: &[(f64, f64)]) -> (f64, f64) {
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope, my - slope * mx)
}

/// How much of the p50's variation over the RTTs the line explains (1:
/// all of it). With two points it is 1 whatever they are.
fn r_squared(pts: &[(f64, f64)], slope: f64, intercept: f64) -> f64 {
    let n = pts.len() as f64;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let total: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let residual: f64 = pts
        .iter()
        .map(|p| (p.1 - (intercept + slope * p.0)).powi(2))
        .sum();
    if total > 0.0 {
        1.0 - residual / total
    } else {
        1.0
    }
}

/// A slope is read as a count of round trips only where the line fits:
/// below this R² the p50 moved with something besides the RTT (a password
/// hash on a throttled host varies by more than a few RTTs).
const MIN_FIT_R2: f64 = 0.9;

/// The slope cell: the count, or why it is not one.
fn slope_cell(r: &Value) -> String {
    let slope = r["roundTrips"].as_f64().unwrap_or(0.0);
    match r["fitR2"].as_f64() {
        Some(r2) if r2 < MIN_FIT_R2 => format!(
            "{slope:.1} — not a count: the line explains {:.0} % of the p50's change (R² {r2:.2}); the p50 moved with more than the RTT",
            r2.max(0.0) * 100.0
        ),
        _ => format!("{slope:.1}"),
    }
}

pub fn round_trips_markdown(md: &mut String, rt: &Value) {
    let (Some(rtts), Some(rows)) = (rt["rttMs"].as_array(), rt["requests"].as_array()) else {
        return;
    };
    let heads: Vec<String> = rtts.iter().map(|r| format!("p50 at {r} ms (ms)")).collect();
    md.push_str(&format!(
        "### Round trips per request\n\nA request that makes n round trips to its data one after another is slower by n × RTT: the slope of its p50 against the link's RTT, fitted over the variants, is the number of round trips it makes in sequence. Expected: read from stage 2's code when the report was made.\n\n| request | {} | round trips (slope) | expected from the code |\n|---|{}---:|---|\n",
        heads.join(" | "),
        "---:|".repeat(heads.len())
    ));
    for r in rows {
        let p50: Vec<String> = rtts
            .iter()
            .map(|x| {
                r["p50Ms"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["rttMs"] == *x))
                    .and_then(|p| p["p50Ms"].as_f64())
                    .map_or("–".into(), |v| format!("{v:.1}"))
            })
            .collect();
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r["request"].as_str().unwrap_or(""),
            p50.join(" | "),
            slope_cell(r),
            match r["expected"]["roundTrips"].as_u64() {
                Some(n) => format!("{n}: {}", r["expected"]["why"].as_str().unwrap_or("")),
                None => "–".into(),
            }
        ));
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(rtt: f64, feed_p50: f64) -> Value {
        json!({
            "topology": {"rttMs": rtt},
            "atBreakingPoint": {"requests": {"GET /api/feed": {"p50Ms": feed_p50}}},
        })
    }

    #[test]
    fn round_trips_are_the_slope_of_p50_against_rtt() {
        // Two round trips in sequence on top of 1.5 ms of work.
        let vs = [variant(0.0, 1.5), variant(0.5, 2.5), variant(2.0, 5.5)];
        let rt = round_trips(&vs);
        let feed = &rt["requests"][0];
        assert_eq!(feed["request"], "GET /api/feed");
        assert!(
            (feed["roundTrips"].as_f64().unwrap() - 2.0).abs() < 1e-9,
            "{rt}"
        );
        assert!(
            (feed["p50AtZeroMs"].as_f64().unwrap() - 1.5).abs() < 1e-9,
            "{rt}"
        );
        assert_eq!(feed["expected"]["roundTrips"], 2);
        assert!((feed["fitR2"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{rt}");
        assert_eq!(slope_cell(feed), "2.0");
        // network-latency's login (results/lab-network-latency-20261205T130257Z):
        // 48.2, 78.8, 79.8 ms at 0, 0.5 and 2 ms is not 12 round trips.
        let login = [variant(0.0, 48.2), variant(0.5, 78.8), variant(2.0, 79.8)];
        let cell = slope_cell(&round_trips(&login)["requests"][0]);
        assert!(cell.starts_with("12.3 — not a count"), "{cell}");
        // One RTT only: nothing to fit.
        assert!(round_trips(&[variant(0.5, 2.0), variant(0.5, 2.1)]).is_null());
    }

    fn hosts_variant(n: u64, pass: f64, fail: f64) -> Value {
        json!({
            "topology": {"rttMs": null},
            "stage": "stage-2",
            "processes": n,
            "breakingPoint": {"arrivalRate": 1.0},
            "atBreakingPoint": {"rps": pass},
            "rpsWhereBroken": fail,
        })
    }

    #[test]
    fn the_usl_over_hosts_brackets_sigma_and_kappa_by_the_search_resolution() {
        let vs = [
            hosts_variant(1, 100.0, 110.0),
            hosts_variant(2, 180.0, 195.0),
            hosts_variant(3, 240.0, 260.0),
        ];
        let u = usl_over_hosts(&vs);
        let (s, k) = (u["sigma"].as_f64().unwrap(), u["kappa"].as_f64().unwrap());
        let sr: Vec<f64> = serde_json::from_value(u["sigmaRange"].clone()).unwrap();
        let kr: Vec<f64> = serde_json::from_value(u["kappaRange"].clone()).unwrap();
        assert!(sr[0] <= s && s <= sr[1] && kr[0] <= k && k <= kr[1], "{u}");
        assert!(sr[1] > sr[0], "the intervals must widen the range: {u}");
        assert!((u["speedup"][1]["vsOne"].as_f64().unwrap() - 1.8).abs() < 1e-9);
        // Fewer than three app-host counts: no fit.
        assert!(usl_over_hosts(&vs[..2]).is_null());
    }
}
