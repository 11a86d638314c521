//! The lab's report as a chapter: the Markdown written beside the JSON
//! report and as `docs/experiments/<experiment>.md`, generated only from
//! the report's data.

use measure::schema::{LabReport, VariantSpread};
use measure::spread::{Reading, Spread};
use serde_json::Value;

use super::Outcome;
use super::catalogue::{Experiment, Method};
use crate::hostreport;

pub(super) fn f1(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.1}"))
}

/// The cost curve: for each dataset size (ascending), the p95 of the
/// experiment's chosen requests under each setting, and their ratio.
pub(super) fn cost_curve(md: &mut String, exp: &Experiment, variants: &[Value]) {
    let mut scales: Vec<f64> = variants
        .iter()
        .filter_map(|v| v["scale"].as_f64())
        .collect();
    scales.sort_by(f64::total_cmp);
    scales.dedup();
    let at = |scale: f64, k: usize| {
        variants
            .iter()
            .filter(|v| v["scale"].as_f64() == Some(scale))
            .nth(k)
    };
    let setting = |k: usize| {
        at(1.0, k).map_or(String::new(), |v| {
            v["flags"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        })
    };
    let (a, b) = (setting(0), setting(1));
    md.push_str(&format!(
        "### The cost curve\n\np50 / p95 (ms) of each request as the dataset grows, `{a}` vs `{b}`, and the ratios (p50 ratio / p95 ratio; same fixed load):\n\n| photos | users |"
    ));
    for r in exp.curve {
        md.push_str(&format!(" {r}: `{a}` | `{b}` | ratio |"));
    }
    md.push_str(&format!(
        "\n|---:|---:|{}\n",
        "---:|---:|---:|".repeat(exp.curve.len())
    ));
    for &scale in &scales {
        let (Some(x), Some(y)) = (at(scale, 0), at(scale, 1)) else {
            continue;
        };
        md.push_str(&format!(
            "| {} | {} |",
            x["dataset"]["photos"], x["dataset"]["users"]
        ));
        for r in exp.curve {
            let p = |v: &Value, q: &str| v["atBreakingPoint"]["requests"][*r][q].as_f64();
            let cell = |v: &Value| match (p(v, "p50Ms"), p(v, "p95Ms")) {
                (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                _ => "–".into(),
            };
            let ratio = |q: &str| match (p(x, q), p(y, q)) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.1}×", b / a),
                _ => "–".into(),
            };
            md.push_str(&format!(
                " {} | {} | {} / {} |",
                cell(x),
                cell(y),
                ratio("p50Ms"),
                ratio("p95Ms")
            ));
        }
        md.push('\n');
    }
    md.push('\n');
}

/// A load level as people read it: "64 visits/s" (open model) or "32 users".
pub(super) fn level(rate: &Value, users: &Value) -> String {
    match rate.as_f64() {
        Some(r) => format!("{r} visits/s"),
        None => format!("{users} users"),
    }
}

/// A row of the comparison table: its name and each variant's cell.
type Row<'a> = dyn Fn(&mut String, &str, &dyn Fn(&Value) -> String) + 'a;

/// The read replicas' rows of the comparison: where reads went and how
/// far behind each replica was at the compared step.
fn replication_rows(md: &mut String, row: &Row) {
    // A variant's cell from its replication figures, if it has replicas.
    let of = |v: &Value, cell: &dyn Fn(&Value) -> String| match v["replication"].as_object() {
        Some(_) => cell(&v["replication"]),
        None => "– (no replica)".into(),
    };
    // One figure of every replica, "a / b".
    let each = |r: &Value, key: &str, scale: f64, digits: usize| {
        r["replicas"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|x| format!("{:.*}", digits, x[key].as_f64().unwrap_or(0.0) / scale))
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
            .unwrap_or_default()
    };
    row(md, "reads served per replica (/s)", &|v| {
        of(v, &|r| each(r, "readsPerSec", 1.0, 0))
    });
    row(
        md,
        "replica reads sent to the primary instead (/s: own write / none usable / retried)",
        &|v| {
            of(v, &|r| {
                let p = &r["toPrimaryPerSec"];
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    p["ownWrite"].as_f64().unwrap_or(0.0),
                    p["noneUsable"].as_f64().unwrap_or(0.0),
                    p["retried"].as_f64().unwrap_or(0.0)
                )
            })
        },
    );
    row(md, "replication lag per replica, peak (ms)", &|v| {
        of(v, &|r| each(r, "peakLagMs", 1.0, 0))
    });
    row(md, "replication lag per replica, peak (KiB of WAL)", &|v| {
        of(v, &|r| each(r, "peakLagBytes", 1024.0, 1))
    });
}

/// The writer's writes per second at each variant's breaking point, as a
/// share of SQLite's raw commit rate measured in the same run, and each
/// group-commit variant against the variant before it (off → on).
pub(super) fn writer_against_disk(md: &mut String, report: &Value, variants: &[Value]) {
    let rates = &report["sqliteCommitRate"];
    let raw = |mode: &str| rates[mode]["commitsPerSec"].as_f64().unwrap_or(0.0);
    md.push_str(&format!(
        "### The writer against the disk\n\nSQLite's raw commit rate on this disk, measured in the same run (`{}`): **{:.0} commits/s** with WAL, **{:.0} commits/s** with the rollback journal (DELETE).\n\n| variant | writes/s at the breaking point | commits/s | share of the raw commit rate of its journal (writes/s ÷ raw) | writes/s vs the variant before |\n|---|---:|---:|---:|---:|\n",
        rates["command"].as_str().unwrap_or("stage-1 commit-rate"),
        raw("wal"),
        raw("delete")
    ));
    let mut before: Option<f64> = None;
    for v in variants {
        let w = &v["sqliteWriter"];
        let (Some(writes), Some(commits)) =
            (w["writesPerSec"].as_f64(), w["commitsPerSec"].as_f64())
        else {
            continue;
        };
        let flags = v["flags"].as_array().cloned().unwrap_or_default();
        let on = flags.iter().any(|x| x == "on");
        let journal = if flags.iter().any(|x| x == "delete") {
            "delete"
        } else {
            "wal"
        };
        let ratio = match (on, before) {
            (true, Some(b)) if b > 0.0 => format!("{:.2}×", writes / b),
            _ => "–".into(),
        };
        md.push_str(&format!(
            "| {} | {writes:.0} | {commits:.0} | {:.0}% ({journal}) | {ratio} |\n",
            v["label"].as_str().unwrap_or(""),
            if raw(journal) > 0.0 {
                writes / raw(journal) * 100.0
            } else {
                0.0
            }
        ));
        before = Some(writes);
    }
    md.push('\n');
}

/// The price of a sign-in per variant: its Argon2 parameters, sign-ins per
/// second at the breaking point, the hashing threads' CPU per hash, and
/// the whole server's CPU per sign-in (every request of the step, so an
/// upper bound).
pub(super) fn sign_in_price(md: &mut String, variants: &[Value]) {
    md.push_str("### The price of a sign-in\n\n| variant | Argon2id parameters | sign-ins/s at the SLO | CPU per hash (ms) | server CPU per sign-in, all work included (ms) |\n|---|---|---:|---:|---:|\n");
    for v in variants {
        let at = &v["atBreakingPoint"];
        let work = &at["serverWork"];
        let hashes = work["passwordHashes"].as_f64().unwrap_or(0.0);
        let per = |secs: &Value| match secs.as_f64() {
            Some(s) if hashes > 0.0 => format!("{:.1}", s * 1000.0 / hashes),
            _ => "–".into(),
        };
        let params = v["flags"]
            .as_array()
            .and_then(|f| {
                f.iter()
                    .position(|x| x == "--argon2")
                    .and_then(|i| f.get(i + 1))
            })
            .and_then(|p| p.as_str())
            .unwrap_or("m=19456,t=2,p=1 (default)")
            .to_owned();
        md.push_str(&format!(
            "| {} | `{params}` | {} | {} | {} |\n",
            v["label"].as_str().unwrap_or(""),
            f1(&at["signInsPerSec"]),
            per(&work["passwordHashCpuSeconds"]),
            per(&work["cpuSeconds"]),
        ));
    }
    md.push('\n');
}

/// What one variant's line under "Observation" says after its label.
pub(super) fn observation(v: &Value, fixed: bool) -> String {
    if fixed {
        let at = &v["atBreakingPoint"];
        return format!(
            " ({} photos): {} gave {} req/s at p95 {} ms, {:.2} % errors; busiest: {}.",
            v["dataset"]["photos"],
            level(&at["arrivalRate"], &at["users"]),
            f1(&at["rps"]),
            f1(&at["p95Ms"]),
            at["errorRate"].as_f64().unwrap_or(0.0) * 100.0,
            v["busiest"].as_str().unwrap_or("–")
        );
    }
    match v["breakingPoint"].as_object() {
        Some(bp) => format!(
            ": held the SLO up to {} ({} req/s); at {} {}; saturated: {}.",
            level(&bp["arrivalRate"], &bp["users"]),
            f1(&bp["rps"]),
            level(&bp["failingArrivalRate"], &bp["failingUsers"]),
            bp["brokenBy"].as_str().unwrap_or(""),
            bp["saturated"].as_str().unwrap_or("")
        ),
        None => ": held the SLO at every step of the ladder.".into(),
    }
}

/// A variant's spread over its repeats, if the report has one.
fn spread_of(v: &Value) -> Option<VariantSpread> {
    serde_json::from_value(v["spread"].clone()).ok()
}

/// "6.2 (5.8–7.1)" from one figure of a variant's spread, when the report
/// has more than one repeat (`None`: read the figure as before).
fn spread_cell(
    v: &Value,
    figure: impl Fn(&VariantSpread) -> Option<&Spread>,
    digits: usize,
) -> Option<String> {
    let s = spread_of(v)?;
    (s.repeats > 1)
        .then(|| figure(&s).map(|f| f.text(digits)))
        .flatten()
}

/// The breaking point's median and range, and the repeats whose SLO held.
fn breaking_cell(s: &VariantSpread, open: bool) -> String {
    let unit = if open { " visits/s" } else { " users" };
    let held = match s.held {
        0 => String::new(),
        n => format!(", SLO held in {n} of {}", s.repeats),
    };
    match &s.breaking_point {
        Some(bp) => format!("{}{unit}{held}", bp.text(0)),
        None => format!("SLO held (all {})", s.repeats),
    }
}

/// "the app-1 host (3 of 3)" for each short name the repeats gave.
fn named_cell(s: &VariantSpread) -> String {
    if s.saturated.is_empty() {
        return "–".into();
    }
    s.saturated
        .iter()
        .map(|n| format!("{} ({} of {})", n.what, n.repeats, s.repeats))
        .collect::<Vec<_>>()
        .join("; ")
}

/// How the figures were repeated, said under "Baseline and load".
fn repeats_paragraph(r: &LabReport) -> String {
    match r.repeats {
        0 | 1 => "**Single run.** Each variant ran once, so no figure below has a spread and no difference is judged against run-to-run noise.\n".into(),
        n => format!(
            "**Repeats.** Each variant ran {n} times in interleaved order (every variant once, then again), each run on fresh storage and fresh servers. Cells with a range read \"median (lowest–highest)\" over the {n} repeats; the other rows come from the repeat with the median breaking point (the median p95 at a fixed load), which the result-file row names.\n"
        ),
    }
}

/// Each variant's spread: the headline figures' medians, ranges, each
/// repeat's value in the order they ran, and the coefficient of variation
/// (standard deviation ÷ mean) that says how far a re-run may land.
fn spread_table(md: &mut String, r: &LabReport) {
    if r.repeats < 2 {
        return;
    }
    let fixed = r.method == "fixed";
    md.push_str(&format!(
        "### Spread over the repeats\n\n| variant | {} | each repeat | CV | req/s | CV | p95 (ms) | CV |\n|---|---:|---|---:|---:|---:|---:|---:|\n",
        if fixed { "p95 (ms)" } else { "breaking point" }
    ));
    let cv = |s: Option<&Spread>| s.map_or("–".into(), |s| format!("{:.1}%", s.cv() * 100.0));
    let text = |s: Option<&Spread>, d: usize| s.map_or("–".into(), |s| s.text(d));
    for v in &r.variants {
        let Some(s) = &v.spread else { continue };
        let (head, each): (Option<&Spread>, String) = if fixed {
            (
                s.p95_ms.as_ref(),
                join(v.repeats.iter().map(|x| format!("{:.1}", x.p95_ms))),
            )
        } else {
            (
                s.breaking_point.as_ref(),
                join(
                    v.repeats
                        .iter()
                        .map(|x| x.breaking_point.map_or("held".into(), |b| format!("{b}"))),
                ),
            )
        };
        md.push_str(&format!(
            "| {} | {} | {each} | {} | {} | {} | {} | {} |\n",
            v.label,
            text(head, if fixed { 1 } else { 0 }),
            cv(head),
            text(s.rps.as_ref(), 1),
            cv(s.rps.as_ref()),
            text(s.p95_ms.as_ref(), 1),
            cv(s.p95_ms.as_ref()),
        ));
    }
    md.push('\n');
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// The experiment's comparisons as a table: each figure's ratio of
/// medians, its range over paired repeats, and what that supports.
fn differences(md: &mut String, r: &LabReport) {
    if r.comparisons.is_empty() {
        return;
    }
    md.push_str("### Differences\n\nB ÷ A per figure: the ratio of the medians, and the lowest and highest ratio over paired repeats (repeat k of B against repeat k of A, which ran side by side). Where that range includes 1, the run shows no measurable difference.\n\n| A | B | figure | B ÷ A | paired repeats | reading |\n|---|---|---|---:|---:|---|\n");
    for c in &r.comparisons {
        let d = &c.difference;
        md.push_str(&format!(
            "| {} | {} | {} | {:.2}× | {} | {} |\n",
            c.baseline,
            c.variant,
            c.figure.text(),
            d.ratio,
            if d.pairs > 1 {
                format!("{:.2}–{:.2}× ({} pairs)", d.low, d.high, d.pairs)
            } else {
                "one pair".into()
            },
            d.reading.text()
        ));
    }
    md.push('\n');
}

/// One generated sentence per comparison, claiming only what its paired
/// range supports.
fn difference_sentence(c: &measure::schema::Comparison) -> String {
    let d = &c.difference;
    let what = c.figure.text();
    match d.reading {
        Reading::Higher | Reading::Lower => format!(
            "**{}** against **{}**: {what} {} in every pair of repeats, {}.",
            c.variant,
            c.baseline,
            d.reading.text(),
            d.text()
        ),
        Reading::NoMeasurableDifference => format!(
            "**{}** against **{}**: no measurable difference in {what} ({}: the repeats overlap).",
            c.variant,
            c.baseline,
            d.text()
        ),
        Reading::SingleRun => format!(
            "**{}** against **{}**: {what} {:.2}× in a single run, not judged against noise.",
            c.variant, c.baseline, d.ratio
        ),
    }
}

pub(super) fn markdown(exp: &Experiment, report: &Value, outcomes: &[Outcome]) -> String {
    let m = &report["machine"];
    let mut md = String::new();
    let line = |md: &mut String, s: String| {
        md.push_str(&s);
        md.push('\n');
    };
    line(&mut md, format!("# Experiment: {}\n", exp.name));
    line(
        &mut md,
        format!(
            "<!-- Generated by `{}` — re-run it to replace every number below with your own. -->\n",
            report["command"].as_str().unwrap_or("loadtests lab")
        ),
    );
    line(&mut md, format!("**Question.** {}\n", exp.question));
    line(&mut md, "## Baseline and load\n".into());
    let base = &outcomes[0].variant;
    line(
        &mut md,
        format!(
            "Baseline: `{}{}` ({} process{}). Dataset: {} users, {} photos, {} follows per user, {} likes, seeded fresh for every variant{}. Load: the `{}` journey mix, {}, {} s per step (after {} s of unmeasured warm-up at the first level), think time {} ms, SLO `{}`. Machine: {} cores, {} MiB, {}; commit `{}`; {}.\n",
            base.stage.bin(),
            if base.flags.is_empty() {
                " with its defaults".to_owned()
            } else {
                format!(" {}", base.flags.join(" "))
            },
            base.processes,
            if base.processes == 1 { "" } else { "es" },
            report["dataset"]["users"],
            report["dataset"]["photos"],
            report["dataset"]["followsPerUser"],
            report["dataset"]["likes"],
            if outcomes.iter().any(|o| o.variant.scale != 1.0) {
                " (variants named 0.1x or 4x get that multiple of the users, photos and likes)"
            } else {
                ""
            },
            if outcomes.iter().any(|o| o.variant.mix.is_some()) {
                "(per variant, see the table)"
            } else {
                report["mix"].as_str().unwrap_or("")
            },
            report["load"]["ladder"].as_str().unwrap_or(""),
            report["load"]["stepSecs"],
            report["load"]["warmupSecs"].as_u64().unwrap_or(0),
            report["load"]["thinkMs"].as_str().unwrap_or(""),
            report["load"]["slo"].as_str().unwrap_or(""),
            m["cores"],
            m["memoryMib"],
            m["cpu"].as_str().unwrap_or(""),
            report["commit"].as_str().unwrap_or(""),
            report["startedAt"].as_str().unwrap_or("")
        ),
    );
    let typed: LabReport = serde_json::from_value(report.clone()).unwrap_or_default();
    line(&mut md, repeats_paragraph(&typed));
    line(&mut md, format!("## The change\n\n{}\n", exp.change));
    line(&mut md, "## Comparison\n".into());
    let variants = report["variants"].as_array().cloned().unwrap_or_default();
    let header: Vec<String> = variants
        .iter()
        .map(|v| v["label"].as_str().unwrap_or("").to_owned())
        .collect();
    line(&mut md, format!("| | {} |", header.join(" | ")));
    line(&mut md, format!("|---|{}", "---:|".repeat(header.len())));
    let row = |md: &mut String, name: &str, cell: &dyn Fn(&Value) -> String| {
        let cells: Vec<String> = variants.iter().map(cell).collect();
        md.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    };
    let fixed = exp.method == Method::Fixed;
    if variants.iter().any(|v| v["topology"].is_object()) {
        row(&mut md, "hosts (cores promised)", &|v| {
            format!(
                "{} ({:.2} cores)",
                v["topology"]["text"].as_str().unwrap_or("shared box"),
                v["topology"]["cores"].as_f64().unwrap_or(0.0)
            )
        });
    }
    if outcomes.iter().any(|o| o.variant.mix.is_some()) {
        row(&mut md, "journey mix", &|v| {
            format!("`{}`", v["mix"].as_str().unwrap_or(""))
        });
    }
    if fixed {
        row(&mut md, "dataset (users / photos)", &|v| {
            format!("{} / {}", v["dataset"]["users"], v["dataset"]["photos"])
        });
        row(&mut md, "load (fixed)", &|v| {
            let at = &v["atBreakingPoint"];
            level(&at["arrivalRate"], &at["users"])
        });
        row(&mut md, "throughput (req/s)", &|v| {
            spread_cell(v, |s| s.rps.as_ref(), 1)
                .unwrap_or_else(|| f1(&v["atBreakingPoint"]["rps"]))
        });
    } else {
        row(&mut md, "breaking point", &|v| match spread_of(v) {
            Some(s) => breaking_cell(&s, report["load"]["model"] == "open"),
            None => match v["breakingPoint"].as_object() {
                Some(bp) => level(&bp["arrivalRate"], &bp["users"]),
                None => "SLO held".into(),
            },
        });
        row(&mut md, "throughput there (req/s)", &|v| {
            spread_cell(v, |s| s.rps.as_ref(), 1)
                .unwrap_or_else(|| f1(&v["atBreakingPoint"]["rps"]))
        });
    }
    if report["load"]["model"] == "open" {
        row(&mut md, "visits in progress (mean / peak)", &|v| {
            let c = &v["atBreakingPoint"]["visitsInProgress"];
            format!("{} / {}", f1(&c["mean"]), c["peak"])
        });
    }
    row(
        &mut md,
        "sign-ins and registrations (% of requests)",
        &|v| {
            v["atBreakingPoint"]["signInShare"]
                .as_f64()
                .map_or("–".into(), |x| format!("{:.2}", x * 100.0))
        },
    );
    row(&mut md, "p50 (ms)", &|v| f1(&v["atBreakingPoint"]["p50Ms"]));
    row(&mut md, "p95 (ms)", &|v| {
        spread_cell(v, |s| s.p95_ms.as_ref(), 1)
            .unwrap_or_else(|| f1(&v["atBreakingPoint"]["p95Ms"]))
    });
    row(&mut md, "p99 (ms)", &|v| f1(&v["atBreakingPoint"]["p99Ms"]));
    for class in crate::slo::Class::ALL {
        row(&mut md, &format!("p95 of {} (ms)", class.name()), &|v| {
            spread_cell(v, |s| s.class_p95_ms.get(class.name()), 1)
                .unwrap_or_else(|| f1(&v["atBreakingPoint"]["classes"][class.name()]["p95Ms"]))
        });
    }
    row(&mut md, "error rate (%)", &|v| {
        v["atBreakingPoint"]["errorRate"]
            .as_f64()
            .map_or("–".into(), |e| format!("{:.2}", e * 100.0))
    });
    if variants.iter().any(|v| v["photoQueue"].is_object()) {
        row(
            &mut md,
            "photos waiting for the worker (mean / peak)",
            &|v| match v["photoQueue"].as_object() {
                Some(q) => format!("{} / {}", f1(&q["meanWaiting"]), f1(&q["peakWaiting"])),
                None => "– (no queue)".into(),
            },
        );
        row(&mut md, "upload to visible, longest (s)", &|v| {
            v["photoQueue"]["peakLagMs"]
                .as_f64()
                .map_or("– (in the request)".into(), |ms| {
                    format!("{:.1}", ms / 1000.0)
                })
        });
    }
    if variants.iter().any(|v| v["replication"].is_object()) {
        replication_rows(&mut md, &row);
    }
    if variants.iter().any(|v| v["timelines"].is_object()) {
        let t = |v: &Value, key: &str| v["timelines"][key].as_f64();
        row(&mut md, "fan-out lag, mean / peak (ms)", &|v| match (
            t(v, "meanLagMs"),
            t(v, "peakLagMs"),
        ) {
            (Some(a), Some(b)) => format!("{a:.0} / {b:.0}"),
            _ => "– (pull)".into(),
        });
        row(&mut md, "fan-out backlog, peak (photos)", &|v| {
            t(v, "peakBacklog").map_or("–".into(), |x| format!("{x:.0}"))
        });
        row(
            &mut md,
            "photos fanned out / celebrity photos merged at read (/s)",
            &|v| match (t(v, "photosFannedOutPerSec"), t(v, "celebrityPhotosPerSec")) {
                (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                _ => "–".into(),
            },
        );
        row(&mut md, "timeline writes (/s)", &|v| {
            t(v, "timelineWritesPerSec").map_or("–".into(), |x| format!("{x:.0}"))
        });
        row(
            &mut md,
            "fan-out workers' time: followers query / timeline writes (ms per s; 1000 = one worker never idle)",
            &|v| match (t(v, "followersMsPerSec"), t(v, "writeMsPerSec")) {
                (Some(a), Some(b)) => format!("{a:.0} / {b:.0}"),
                _ => "–".into(),
            },
        );
        row(&mut md, "timelines built from Postgres (/s)", &|v| {
            t(v, "builtPerSec").map_or("–".into(), |x| format!("{x:.1}"))
        });
    }
    if variants.iter().any(|v| v["sqliteWriter"].is_object()) {
        let w = |v: &Value, key: &str| v["sqliteWriter"][key].as_f64();
        row(&mut md, "SQLite writes/s (commits/s)", &|v| match (
            w(v, "writesPerSec"),
            w(v, "commitsPerSec"),
        ) {
            (Some(a), Some(b)) => format!("{a:.0} ({b:.0})"),
            _ => "–".into(),
        });
        row(&mut md, "writes per commit", &|v| {
            w(v, "writesPerCommit").map_or("–".into(), |x| format!("{x:.1}"))
        });
        row(
            &mut md,
            "writes queued for the writer (mean / peak)",
            &|v| match (w(v, "meanWaiting"), w(v, "peakWaiting")) {
                (Some(a), Some(b)) => format!("{a:.1} / {b:.0}"),
                _ => "–".into(),
            },
        );
        row(
            &mut md,
            "read connections held / reading (mean of 8)",
            &|v| match (w(v, "readersBusy"), w(v, "readersReading")) {
                (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                _ => "–".into(),
            },
        );
    }
    if fixed {
        row(&mut md, "busiest resource", &|v| {
            v["busiest"].as_str().unwrap_or("–").to_owned()
        });
        if typed.repeats > 1 {
            row(&mut md, "busiest first, over the repeats", &|v| {
                spread_of(v).map_or("–".into(), |s| named_cell(&s))
            });
        }
    } else {
        row(&mut md, "SLO broken by", &|v| {
            v["breakingPoint"]["brokenBy"]
                .as_str()
                .unwrap_or("–")
                .to_owned()
        });
        row(&mut md, "saturated first", &|v| {
            v["breakingPoint"]["saturated"]
                .as_str()
                .unwrap_or("–")
                .to_owned()
        });
        if typed.repeats > 1 {
            row(&mut md, "saturated first, over the repeats", &|v| {
                spread_of(v).map_or("–".into(), |s| named_cell(&s))
            });
        }
        row(&mut md, "USL σ (contention)", &|v| {
            v["usl"]["sigma"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.4}"))
        });
        row(&mut md, "USL κ (coherency)", &|v| {
            v["usl"]["kappa"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.6}"))
        });
        row(
            &mut md,
            "USL predicted peak (concurrency)",
            &|v| match serde_json::from_value::<measure::usl::UslFit>(v["usl"].clone()) {
                Ok(fit) => match fit.supported_peak() {
                    Some((n, _)) => format!("{n:.0}"),
                    None => fit.peak_caveat(),
                },
                Err(_) => "–".into(),
            },
        );
    }
    row(&mut md, "result file", &|v| {
        format!("`{}`", v["resultFile"].as_str().unwrap_or(""))
    });
    md.push('\n');
    line(
        &mut md,
        if fixed {
            "p95 per request at the fixed load (ms):\n".into()
        } else {
            "p95 per request at each variant's breaking point (ms):\n".into()
        },
    );
    line(&mut md, format!("| request | {} |", header.join(" | ")));
    line(&mut md, format!("|---|{}", "---:|".repeat(header.len())));
    let mut names: Vec<String> = variants
        .iter()
        .filter_map(|v| v["atBreakingPoint"]["requests"].as_object())
        .flat_map(|r| r.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        row(&mut md, &name, &|v| {
            f1(&v["atBreakingPoint"]["requests"][&name]["p95Ms"])
        });
    }
    md.push('\n');
    if !exp.curve.is_empty() {
        cost_curve(&mut md, exp, &variants);
    }
    if exp.prices_sign_in {
        sign_in_price(&mut md, &variants);
    }
    if report["sqliteCommitRate"].is_object() {
        writer_against_disk(&mut md, report, &variants);
    }
    spread_table(&mut md, &typed);
    differences(&mut md, &typed);
    hostreport::hosts_markdown(&mut md, &variants);
    hostreport::usl_markdown(&mut md, &report["uslOverHosts"]);
    hostreport::round_trips_markdown(&mut md, &report["roundTrips"]);
    // Filled by `dashboard report`, which draws the charts from the result
    // files this run writes (dashboard/src/chapter_charts.rs).
    line(
        &mut md,
        format!(
            "## Charts\n\n<!-- report:charts:{0} -->\n<!-- /report:charts:{0} -->\n",
            exp.name
        ),
    );
    line(&mut md, "## Observation\n".into());
    for v in &variants {
        line(
            &mut md,
            format!(
                "- **{}**{}",
                v["label"].as_str().unwrap_or(""),
                observation(v, fixed)
            ),
        );
    }
    for c in &typed.comparisons {
        line(&mut md, format!("- {}", difference_sentence(c)));
    }
    md.push('\n');
    line(&mut md, format!("## Trade-off\n\n{}\n", exp.tradeoff));
    line(
        &mut md,
        format!(
            "## Limits of this experiment\n\n{} {}; {}; each step is one measurement of {} seconds{}.\n",
            exp.limits,
            if variants.iter().any(|v| v["topology"].is_object()) {
                "The load generator runs in a host of its own, inside its CPU budget (the hosts table shows what it used)"
            } else {
                "The load generator runs on the same machine as the servers (its CPU share is in each result file)"
            },
            if report["load"]["model"] == "open" {
                "the load is an open model (visits start on schedule, each a person with think times between their actions; latency is timed from the scheduled start)"
            } else {
                "the load is a closed model with think times (users, not arrivals per second)"
            },
            match report["load"]["bisectSecs"].as_u64() {
                Some(b)
                    if typed.method == "breaking"
                        && Some(b) != report["load"]["stepSecs"].as_u64() =>
                    format!("{} (each bisection step {b})", report["load"]["stepSecs"]),
                _ => report["load"]["stepSecs"].to_string(),
            },
            if typed.repeats > 1 {
                format!(
                    ", and each variant ran {} times: a range is the lowest and highest of those repeats, not a confidence interval, and a difference is claimed only where every pair of repeats agrees on its direction",
                    typed.repeats
                )
            } else {
                ", and each variant ran once: nothing here says how far a second run would land from this one (see the repeatability experiment for this machine's spread)".to_owned()
            }
        ),
    );
    line(
        &mut md,
        format!(
            "Reproduce: `{}` (about {:.0} minutes here).",
            report["command"].as_str().unwrap_or(""),
            report["minutes"].as_f64().unwrap_or(0.0).ceil()
        ),
    );
    md
}
