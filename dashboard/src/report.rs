//! `dashboard report`: rewrites the generated parts of README.md and
//! docs/**/*.md from the result files, so that every figure a reader sees
//! comes from a file a command wrote.
//!
//! A generated part sits between two markers:
//!
//! ```text
//! <!-- report:headline -->
//! ...replaced on every run...
//! <!-- /report:headline -->
//! ```
//!
//! Each block ends with the result file it came from and the command that
//! made that file. `--check` rewrites nothing and fails when a block is not
//! what the result files give (the test command runs it).

use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::chapter_charts::{self, ChartFile};
use measure::schema::{Crosscheck, CrosscheckRun, LabReport};
use measure::spread::{Difference, Spread, broken_on};

/// The result files, by name, parsed.
pub struct Sources {
    files: BTreeMap<String, Value>,
    /// The same files, typed (the charts read the load-test runs).
    results: crate::model::Results,
}

impl Sources {
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the results directory {}", dir.display()))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())?;
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                files.insert(name, v);
            }
        }
        Ok(Self {
            files,
            results: crate::model::load(dir)?,
        })
    }

    /// The newest file (by name: names end in their UTC time) matching `pred`.
    fn latest(&self, pred: impl Fn(&str, &Value) -> bool) -> Option<(&str, &Value)> {
        self.files
            .iter()
            .rev()
            .find(|(n, v)| pred(n, v))
            .map(|(n, v)| (n.as_str(), v))
    }

    fn lab(&self, experiment: &str) -> Option<(&str, &Value)> {
        self.latest(|_, v| v["schema"] == "minigram.lab/1" && v["experiment"] == experiment)
    }

    /// The charts of `experiment`'s chapter, from its newest lab report's
    /// runs (in the report's order: the baseline first).
    pub fn chapter_charts(&self, experiment: &str) -> anyhow::Result<(String, Vec<ChartFile>)> {
        let lab = crate::overview::newest_reports(&self.results)
            .into_iter()
            .find(|l| l.report.experiment == experiment)
            .with_context(|| format!("no lab report of {experiment} in results/"))?;
        let runs = crate::overview::repeats_of(&self.results, lab);
        Ok((
            lab.file.clone(),
            chapter_charts::for_experiment(experiment, &runs)?,
        ))
    }

    /// The same files, typed (`model.rs`).
    pub fn results(&self) -> &crate::model::Results {
        &self.results
    }

    fn named(&self, name: &str) -> Option<(&str, &Value)> {
        self.files.get_key_value(name).map(|(n, v)| (n.as_str(), v))
    }
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("–")
}

/// "Source: `results/x.json`, made by `cmd` at commit c (current code) on
/// <machine>, <date>."
fn source(src: &Sources, name: &str, v: &Value) -> String {
    let m = &v["machine"];
    // The command as typed: `loadtests spike …`, not the binary's full path.
    let command = v["command"]
        .as_str()
        .map(|c| {
            let (bin, rest) = c.split_once(' ').unwrap_or((c, ""));
            let bin = bin.rsplit('/').next().unwrap_or(bin);
            format!("{bin} {rest}").trim_end().to_owned()
        })
        .unwrap_or_else(|| "(command not recorded)".into());
    format!(
        "<sub>Source: [`results/{name}`](results/{name}), written by `{}` at commit `{}` ({}) on {} cores / {} MiB ({}), {}.</sub>\n",
        command,
        v["commit"].as_str().unwrap_or("unknown"),
        src.results.age_of(name),
        m["cores"],
        m["memoryMib"],
        m["cpu"].as_str().unwrap_or("cpu not recorded"),
        v["startedAt"]
            .as_str()
            .map_or("", |d| d.get(..10).unwrap_or(d))
    )
}

/// One generated block, by its key; `prefix` makes links relative to the
/// file the block sits in (`../` for docs/, `../../` for docs/experiments/).
pub fn block(src: &Sources, key: &str, prefix: &str) -> anyhow::Result<String> {
    let body = match key.split_once(':').unwrap_or((key, "")) {
        ("headline", _) => headline(src)?,
        ("lab-summary", _) => lab_summary(src),
        ("repeatability", _) => repeatability(src)?,
        ("crosscheck", _) => crosscheck(src)?,
        ("bench", file) => bench(src, file)?,
        ("storage", stage) => storage(src, stage)?,
        ("breaking", stage) => breaking(src, stage),
        ("spike", stage) => spike(src, stage)?,
        ("charts", experiment) => charts(src, experiment)?,
        _ => bail!("unknown report block {key:?}"),
    };
    Ok(body.replace("](results/", &format!("]({prefix}results/")))
}

/// A load level from a JSON object: `rate` (visits/s, open model) if set,
/// else `users`.
fn level(rate: &Value, users: &Value) -> String {
    match rate.as_f64() {
        Some(r) => format!("{r} visits/s"),
        None => format!("{users} users"),
    }
}

/// A breaking point's level, or "SLO held" when there is none.
fn held(bp: &Value) -> String {
    if bp.is_object() {
        level(&bp["arrivalRate"], &bp["users"])
    } else {
        "SLO held".into()
    }
}

fn headline(src: &Sources) -> anyhow::Result<String> {
    let (name, r) = src
        .lab("stage1-vs-stage2")
        .context("no stage1-vs-stage2 lab report in results/")?;
    let mut t = String::from(
        "| | breaking point | throughput there (req/s) | p95 there (ms) | sign-ins (% of requests) | the SLO broke on | saturated first |\n|---|---:|---:|---:|---:|---|---|\n",
    );
    for v in r["variants"].as_array().into_iter().flatten() {
        let bp = &v["breakingPoint"];
        let who = match v["topology"]["text"].as_str() {
            Some(hosts) => format!(
                "{}: {hosts} ({:.2} cores)",
                s(&v["stage"]),
                v["topology"]["cores"].as_f64().unwrap_or(0.0)
            ),
            None => s(&v["stage"]).to_string(),
        };
        t.push_str(&format!(
            "| {who} | {} | {} | {} | {} | {} | {} |\n",
            held(bp),
            f(&v["atBreakingPoint"]["rps"], 0),
            f(&v["atBreakingPoint"]["p95Ms"], 1),
            v["atBreakingPoint"]["signInShare"]
                .as_f64()
                .map_or("–".into(), |x| format!("{:.2}", x * 100.0)),
            s(&bp["brokenBy"]),
            s(&bp["saturated"])
        ));
    }
    t.push_str(&format!(
        "\nSame journeys (`{}` mix, {} model), same dataset ({} users, {} photos), {}; the whole run took {} minutes. Chapter: [stage1-vs-stage2](docs/experiments/stage1-vs-stage2.md).\n\n",
        s(&r["mix"]),
        r["load"]["model"].as_str().unwrap_or("closed"),
        r["dataset"]["users"],
        r["dataset"]["photos"],
        if r["variants"][0]["topology"].is_object() {
            "each variant on the simulated hosts named in its row (CPU budgets; the load generator in a host of its own)"
        } else {
            "one process each on the shared box"
        },
        f(&r["minutes"], 1)
    ));
    t.push_str(&source(src, name, r));
    Ok(t)
}

/// One line per experiment: each variant's breaking point (or, at fixed
/// load, its p95), from the newest report of each.
fn lab_summary(src: &Sources) -> String {
    let mut latest: BTreeMap<&str, (&str, &Value)> = BTreeMap::new();
    for (name, v) in &src.files {
        if v["schema"] == "minigram.lab/1" {
            latest.insert(v["experiment"].as_str().unwrap_or(""), (name.as_str(), v));
        }
    }
    let mut t = String::from(
        "| experiment | runs per variant | what each variant measured | test bed | machine | code | minutes | report |\n|---|---|---|---|---|---|---:|---|\n",
    );
    for (exp, (name, r)) in &latest {
        let fixed = r["method"] == "fixed";
        let typed: LabReport = serde_json::from_value((*r).clone()).unwrap_or_default();
        let runs = match typed.repeats {
            0 | 1 => "single run".to_owned(),
            n => format!("{n}, interleaved: median (range)"),
        };
        let repeated: Vec<String> = typed
            .variants
            .iter()
            .filter(|_| typed.repeats > 1)
            .filter_map(|v| {
                let sp = v.spread.as_ref()?;
                Some(if fixed {
                    format!(
                        "{}: p95 {} ms",
                        v.label,
                        sp.p95_ms.as_ref().map_or("–".into(), |x| x.text(1))
                    )
                } else {
                    format!(
                        "{}: {}, {} req/s",
                        v.label,
                        match (&sp.breaking_point, sp.held) {
                            (Some(bp), 0) => format!("{} visits/s", bp.text(0)),
                            (Some(bp), held) => {
                                format!("{} visits/s (SLO held in {held})", bp.text(0))
                            }
                            (None, _) => "SLO held".into(),
                        },
                        sp.rps.as_ref().map_or("–".into(), |x| x.text(0))
                    )
                })
            })
            .collect();
        let cells: Vec<String> = r["variants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                let at = &v["atBreakingPoint"];
                if fixed {
                    format!(
                        "{}: p95 {} ms at {}",
                        s(&v["label"]),
                        f(&at["p95Ms"], 1),
                        level(&at["arrivalRate"], &at["users"])
                    )
                } else if v["breakingPoint"].is_object() {
                    format!(
                        "{}: {}, {} req/s",
                        s(&v["label"]),
                        held(&v["breakingPoint"]),
                        f(&at["rps"], 0)
                    )
                } else {
                    format!(
                        "{}: SLO held to {} ({} req/s)",
                        s(&v["label"]),
                        level(&at["arrivalRate"], &at["users"]),
                        f(&at["rps"], 0)
                    )
                }
            })
            .collect();
        let cells = if repeated.is_empty() { cells } else { repeated };
        t.push_str(&format!(
            "| [{exp}](docs/experiments/{exp}.md) | {runs} | {} | {} | {} ({} cores) | {} | {} | [`{name}`](results/{name}) |\n",
            cells.join(" · "),
            if typed.on_hosts() {
                "simulated hosts"
            } else {
                "shared box"
            },
            typed.machine.cpu,
            typed.machine.cores,
            src.results.age_of(name),
            f(&r["minutes"], 1)
        ));
    }
    t.push_str(
        "\n<sub>Source: the newest `results/lab-<experiment>-<time>.report.json` of each experiment, written by `loadtests lab <experiment>`; commit and hosts are in each report and chapter. \"Simulated hosts\": each process in a cgroup with a CPU budget; \"shared box\": every process on the same cores. \"Stale\": the code the run measured has changed since its commit (`dashboard stale` lists them).</sub>\n",
    );
    t
}

/// How far a figure of this lab moves when nothing changes: the newest
/// `repeatability` run, per variant the breaking point and req/s at the
/// SLO over its repeats with their coefficient of variation.
fn repeatability(src: &Sources) -> anyhow::Result<String> {
    let (name, v) = src
        .lab("repeatability")
        .context("no lab-repeatability report in results/: run `loadtests lab repeatability`")?;
    let r: LabReport = serde_json::from_value(v.clone())?;
    let mut t = String::from(
        "| variant | hosts | repeats | breaking point (visits/s): median (range) | CV | req/s at the SLO: median (range) | CV | saturated first |\n|---|---|---:|---:|---:|---:|---:|---|\n",
    );
    let cv = |x: Option<&Spread>| x.map_or("–".into(), |x| format!("{:.1}%", x.cv() * 100.0));
    for variant in &r.variants {
        let Some(sp) = &variant.spread else { continue };
        let hosts = variant
            .rest
            .get("topology")
            .and_then(|t| t["text"].as_str())
            .unwrap_or("shared box");
        t.push_str(&format!(
            "| {} ({}) | {hosts} | {} | {}{} | {} | {} | {} | {} |\n",
            variant.label,
            variant.stage,
            sp.repeats,
            sp.breaking_point.as_ref().map_or("–".into(), |x| x.text(0)),
            if sp.held > 0 {
                format!(", SLO held in {}", sp.held)
            } else {
                String::new()
            },
            cv(sp.breaking_point.as_ref()),
            sp.rps.as_ref().map_or("–".into(), |x| x.text(0)),
            cv(sp.rps.as_ref()),
            sp.saturated
                .iter()
                .map(|n| format!("{} ({} of {})", n.what, n.repeats, sp.repeats))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    t.push('\n');
    t.push_str(&source(src, name, v));
    Ok(t)
}

/// One figure of a cross-check run (users or req/s at the breaking point).
type Figure = fn(&CrosscheckRun) -> Option<f64>;

/// The outside-generator cross-check: per generator, stage 1's breaking
/// point and req/s there over the repeats, and ours ÷ Locust's paired by
/// repeat, against the 20 % the lab promises.
fn crosscheck(src: &Sources) -> anyhow::Result<String> {
    let (name, v) = src
        .latest(|_, v| v["schema"] == Crosscheck::SCHEMA)
        .context("no crosscheck-locust file in results/: run `scripts/crosscheck.sh`")?;
    let c: Crosscheck = serde_json::from_value(v.clone())?;
    let ours = |r: &&CrosscheckRun| r.generator.starts_with(Crosscheck::OURS);
    let (mine, theirs): (Vec<&CrosscheckRun>, Vec<&CrosscheckRun>) = c.runs.iter().partition(ours);
    let mut t = String::from(
        "| generator | repeats | breaking point (users): median (range) | req/s at the SLO: median (range) | its own CPU where the SLO broke (cores) | the SLO broke on |\n|---|---:|---:|---:|---:|---|\n",
    );
    let spread = |runs: &[&CrosscheckRun], f: Figure, d: usize| {
        Spread::of(&runs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            .map_or("–".into(), |s| s.text(d))
    };
    for runs in [&mine, &theirs] {
        let Some(first) = runs.first() else { continue };
        let mut broke: BTreeMap<&str, usize> = BTreeMap::new();
        for r in runs.iter() {
            *broke.entry(broken_on(r.broken_by.as_deref())).or_default() += 1;
        }
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            first.generator,
            runs.len(),
            spread(runs, |r| r.users, 0),
            spread(runs, |r| r.rps, 0),
            spread(runs, |r| r.generator_cores_at_failure, 2),
            broke
                .iter()
                .map(|(w, n)| format!("{w} ({n} of {})", runs.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // Paired by repeat: Locust's run is A, ours B.
    let by_repeat = |runs: &[&CrosscheckRun], f: Figure| {
        (1..=c.repeats)
            .map(|k| runs.iter().find(|r| r.repeat == k).and_then(|r| f(r)))
            .collect::<Vec<_>>()
    };
    let within = |d: &Difference| {
        if (0.8..=1.2).contains(&d.ratio) {
            "within the 20 % the lab promises"
        } else {
            "**not** within the 20 % the lab promises"
        }
    };
    let figures: [(&str, Figure); 2] = [
        ("breaking point", |r| r.users),
        ("req/s at the SLO", |r| r.rps),
    ];
    for (what, f) in figures {
        if let Some(d) = Difference::of(&by_repeat(&theirs, f), &by_repeat(&mine, f)) {
            t.push_str(&format!(
                "\nOurs ÷ Locust's, {what}: {} — {}.",
                d.text(),
                within(&d)
            ));
        }
    }
    t.push_str(&format!("\n\nTest bed: {}; {}.\n\n", c.test_bed, c.model));
    t.push_str(&source(src, name, v));
    Ok(t)
}

fn bench(src: &Sources, file: &str) -> anyhow::Result<String> {
    let (name, v) = src
        .named(&format!("{file}.json"))
        .with_context(|| format!("no results/{file}.json"))?;
    let b = crate::bench(name.to_owned(), v)
        .with_context(|| format!("{name} is not a benchmark file"))?;
    let mut t = String::from("| figure | value |\n|---|---:|\n");
    for (k, val) in &b.rows {
        t.push_str(&format!("| {k} | {val} |\n"));
    }
    t.push_str(&format!("\nDataset: {}.\n\n", b.dataset));
    t.push_str(&source(src, name, v));
    Ok(t)
}

fn storage(src: &Sources, stage: &str) -> anyhow::Result<String> {
    let (name, v) = src
        .named(&format!("bench-storage-{stage}.json"))
        .with_context(|| format!("no results/bench-storage-{stage}.json"))?;
    let mut t = measure::results::storage_table(v);
    t.push_str(&format!(
        "\n{}: {} users, {} photos, {} follows per user, {} likes; {}.\n\n",
        s(&v["backend"]),
        v["dataset"]["users"],
        v["dataset"]["photos"],
        v["dataset"]["followsPerUser"],
        v["dataset"]["likes"],
        s(&v["method"])
    ));
    t.push_str(&source(src, name, v));
    Ok(t)
}

/// Every breaking point measured for `stage`: plain `loadtests breaking`
/// runs and the lab's variants, newest first.
fn breaking(src: &Sources, stage: &str) -> String {
    let mut t = String::from(
        "| run | mix | settings | dataset (users / photos) | breaking point | req/s there | the SLO broke on | saturated first | machine | code |\n|---|---|---|---|---:|---:|---|---|---|---|\n",
    );
    let mut n = 0;
    for (name, v) in src.files.iter().rev() {
        if v["schema"] != "minigram.loadtest/1" || v["mode"] != "breaking" || v["stage"] != stage {
            continue;
        }
        let run = match v["experiment"]["name"].as_str() {
            Some(e) => format!("lab {e}, {}", s(&v["experiment"]["variant"])),
            None => "loadtests breaking".into(),
        };
        let flags: Vec<&str> = v["summary"]["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        let processes = v["summary"]["processes"].as_u64().unwrap_or(1);
        let settings = match (flags.is_empty(), processes) {
            (true, 1) => "defaults".to_owned(),
            (true, p) => format!("{p} processes"),
            (false, 1) => format!("`{}`", flags.join(" ")),
            (false, p) => format!("`{}`, {p} processes", flags.join(" ")),
        };
        // A run on simulated hosts says so: its numbers are of those
        // budgets, not of the whole machine.
        let settings = match v["topology"]["text"].as_str() {
            Some(hosts) => format!("{settings}; hosts: {hosts}"),
            None => format!("{settings}; shared box"),
        };
        // Files before the mix was recorded: a lab variant's mix is its
        // experiment's (in the report); a plain run used the default.
        let mix = v["mix"].as_str().or_else(|| {
            let exp = v["experiment"]["name"].as_str()?;
            src.lab(exp)?.1["mix"].as_str()
        });
        let bp = &v["breakingPoint"];
        let ds = &v["dataset"];
        let count = |x: &Value| x.as_u64().map_or("–".into(), |n| n.to_string());
        let last = v["steps"].as_array().and_then(|s| s.last());
        let (users, rps) = if bp.is_object() {
            (held(bp), f(&bp["rps"], 0))
        } else {
            (
                format!(
                    "SLO held to {}",
                    last.map_or("–".into(), |s| level(&s["arrivalRate"], &s["users"]))
                ),
                last.map_or("–".into(), |s| f(&s["rps"], 0)),
            )
        };
        let ds_users = if ds["users"].is_null() {
            &ds["seededUsers"]
        } else {
            &ds["users"]
        };
        t.push_str(&format!(
            "| [{run}](results/{name}) | {} | {settings} | {} / {} | {users} | {rps} | {} | {} | {} ({} cores) | {} |\n",
            mix.unwrap_or("default"),
            count(ds_users),
            count(&ds["photos"]),
            s(&bp["brokenBy"]),
            s(&bp["saturated"]),
            s(&v["machine"]["cpu"]),
            v["machine"]["cores"],
            src.results.age_of(name)
        ));
        n += 1;
    }
    t.push_str(&format!(
        "\n<sub>Source: the {n} `minigram.loadtest/1` files of {stage} in `results/` with mode `breaking`, written by `loadtests breaking` or `loadtests lab`; each names its command and commit.</sub>\n"
    ));
    t
}

fn spike(src: &Sources, stage: &str) -> anyhow::Result<String> {
    let (name, v) = src
        .latest(|_, v| v["mode"] == "spike" && v["stage"] == stage)
        .with_context(|| format!("no spike run of {stage} in results/"))?;
    let m = &v["summary"];
    let c = &m["shedAsClientsSawIt"];
    // The spike step's two counts, and (files since 2026-12-07) what only
    // the servers counted: see `steps[].edge` in docs/results-schema.md.
    let spiked = &v["steps"][1];
    let edge = &spiked["edge"];
    let counts = format!(
        "{} / {}{}",
        spiked["clientRequests"],
        spiked["serverRequests"],
        if edge.is_object() {
            format!(
                " ({} of them in the second the users launched in, which Goose leaves out; {} in flight as the step began)",
                edge["launchRequests"], edge["inFlightAtStart"]
            )
        } else {
            " (file from before the difference was recorded)".to_owned()
        }
    );
    let t = format!(
        "| figure | value |\n|---|---:|\n| users in the spike | {} |\n| requests in the spike: client / server count | {counts} |\n| requests shed (server count) | {} |\n| slowest shed answer, server side | {} ms |\n| shed answers as clients saw them: p50 / p99 / max | {} / {} / {} ms |\n| error rate in the spike | {} % |\n| peak memory (RSS) | {} MiB |\n| server up after the spike | {} |\n| p95 back under {} ms within | {} s |\n\n{}",
        m["spikeUsers"],
        m["shedInSpike"],
        f(&m["slowestShedMs"], 0),
        f(&c["p50Ms"], 0),
        f(&c["p99Ms"], 0),
        f(&c["maxMs"], 0),
        f(&(m["spikeErrorRate"].as_f64().map(|x| x * 100.0).into()), 1),
        f(&m["peakRssMib"], 1),
        if m["serverUpAfterSpike"] == true {
            "yes"
        } else {
            "no"
        },
        f(&m["recoveryTargetP95Ms"], 0),
        m["recoveredWithinSecs"],
        source(src, name, v)
    );
    Ok(t)
}

/// The Markdown files the report rewrites: README.md and docs/**/*.md.
/// The chapter's pictures: Markdown images of the chart files written
/// beside it (see [`write_charts`]).
fn charts(src: &Sources, experiment: &str) -> anyhow::Result<String> {
    let (file, charts) = src.chapter_charts(experiment)?;
    let mut md = String::new();
    for c in &charts {
        md.push_str(&format!("![{}]({})\n\n", c.alt, c.file));
    }
    md.push_str(&format!(
        "*Charts drawn by `dashboard report` from [{file}](results/{file}) and its runs' result files, made by `loadtests lab {experiment}`.*\n"
    ));
    Ok(md)
}

/// Writes (or with `check`, compares) the chart files of every `charts`
/// block of `doc` beside it; the stale ones' names.
fn write_charts(
    src: &Sources,
    doc: &Path,
    keys: &[String],
    check: bool,
) -> anyhow::Result<Vec<String>> {
    let dir = doc.parent().unwrap_or(Path::new("."));
    let mut stale = Vec::new();
    for experiment in keys.iter().filter_map(|k| k.strip_prefix("charts:")) {
        for c in src.chapter_charts(experiment)?.1 {
            let path = dir.join(&c.file);
            if std::fs::read_to_string(&path).ok().as_deref() == Some(c.svg.as_str()) {
                continue;
            }
            if check {
                stale.push(path.display().to_string());
            } else {
                measure::files::write_whole(&path, c.svg.as_bytes())?;
            }
        }
    }
    Ok(stale)
}

pub fn documents(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `text` with every block regenerated; the keys it found.
pub fn rewrite(src: &Sources, text: &str, prefix: &str) -> anyhow::Result<(String, Vec<String>)> {
    let mut out = String::with_capacity(text.len());
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!-- report:") {
        let open_end = rest[start..]
            .find("-->")
            .map(|i| start + i + 3)
            .context("an unclosed <!-- report: marker")?;
        let key = rest[start + "<!-- report:".len()..open_end - 3]
            .trim()
            .to_owned();
        let close = format!("<!-- /report:{key} -->");
        let close_at = rest[open_end..]
            .find(&close)
            .map(|i| open_end + i)
            .with_context(|| format!("<!-- report:{key} --> has no {close}"))?;
        out.push_str(&rest[..open_end]);
        out.push('\n');
        out.push_str(&block(src, &key, prefix)?);
        out.push_str(&close);
        rest = &rest[close_at + close.len()..];
        keys.push(key);
    }
    out.push_str(rest);
    Ok((out, keys))
}

/// "from the result files up to 2026-12-07": the newest start time any
/// result file records (the page's own date would change it every run).
pub fn newest_run_date(src: &Sources) -> String {
    let newest = src
        .files
        .values()
        .filter_map(|v| v["startedAt"].as_str())
        .filter_map(|d| d.get(..10))
        .max()
        .unwrap_or("(no dated file)");
    format!("from the result files up to {newest}")
}

/// Rewrites (or with `check`, compares) every document under `root`;
/// returns a line per document that has blocks.
pub fn run(root: &Path, results: &Path, check: bool) -> anyhow::Result<Vec<String>> {
    let src = Sources::load(results)?;
    let mut lines = Vec::new();
    let mut stale = Vec::new();
    for doc in documents(root) {
        let Ok(text) = std::fs::read_to_string(&doc) else {
            continue;
        };
        let rel = doc.strip_prefix(root).unwrap_or(&doc);
        let depth = rel.components().count().saturating_sub(1);
        let prefix = "../".repeat(depth);
        let (new, keys) =
            rewrite(&src, &text, &prefix).with_context(|| format!("in {}", doc.display()))?;
        if keys.is_empty() {
            continue;
        }
        stale.extend(write_charts(&src, &doc, &keys, check)?);
        let changed = new != text;
        if changed && check {
            stale.push(rel.display().to_string());
        } else if changed {
            measure::files::write_whole(&doc, new.as_bytes())?;
        }
        lines.push(format!(
            "{}: {} block{} ({}){}",
            rel.display(),
            keys.len(),
            if keys.len() == 1 { "" } else { "s" },
            keys.join(", "),
            match (changed, check) {
                (false, _) => ", up to date",
                (true, true) => ", OUT OF DATE",
                (true, false) => ", rewritten",
            }
        ));
    }
    // The dashboard page too: drawn from the same files, with a date that
    // is theirs (the newest run's), so the same files give the same page.
    let page_path = results.join("dashboard.html");
    let page = crate::render(&src.results, newest_run_date(&src))?;
    let old = std::fs::read_to_string(&page_path).unwrap_or_default();
    let changed = page != old;
    if changed && check {
        stale.push(format!("{}", page_path.display()));
    } else if changed {
        measure::files::write_whole(&page_path, page.as_bytes())?;
    }
    lines.push(format!(
        "{}: {}",
        page_path.display(),
        match (changed, check) {
            (false, _) => "up to date",
            (true, true) => "OUT OF DATE",
            (true, false) => "rewritten",
        }
    ));
    if !stale.is_empty() {
        bail!(
            "{} do not match the result files: run `cargo run --release -p dashboard -- report` and commit the result",
            stale.join(", ")
        );
    }
    Ok(lines)
}
