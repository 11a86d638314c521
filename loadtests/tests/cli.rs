//! Bad input to the tool: one clear line, a non-zero exit, no panic, and no
//! result file that could pass for a complete one.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_loadtests");

fn run(args: &[&str]) -> (bool, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result.json");
    let o = Command::new(BIN)
        .args(args)
        .arg("--json-out")
        .arg(&out)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        out,
        dir,
    )
}

fn assert_clean_failure(args: &[&str], expect: &str) {
    let (ok, err, out, _dir) = run(args);
    assert!(!ok, "{args:?} should fail");
    assert!(err.contains(expect), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!out.exists(), "no result file for a failed run");
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn unreachable_host() {
    let host = format!("http://127.0.0.1:{}", closed_port());
    assert_clean_failure(&["smoke", "--host", &host], "cannot reach");
}

#[test]
fn host_that_is_not_minigram() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello");
        }
    });
    assert_clean_failure(
        &["smoke", "--host", &host],
        "not JSON: is this a Minigram server?",
    );
}

#[test]
fn bad_slo_and_bad_numbers() {
    let host = format!("http://127.0.0.1:{}", closed_port());
    assert_clean_failure(
        &["smoke", "--host", &host, "--slo", "p95=fast"],
        "bad --slo",
    );
    assert_clean_failure(
        &["breaking", "--host", &host, "--max-users", "0"],
        "--max-users must be at least 1",
    );
    assert_clean_failure(
        &["load", "--host", &host, "--users", "0"],
        "--users must be at least 1",
    );
    assert_clean_failure(
        &["smoke", "--host", "127.0.0.1:8080"],
        "must start with http://",
    );
}

/// The open model's and the people's flags: every bad value is refused
/// in one line before any load is sent.
#[test]
fn bad_rates_shares_and_slo_classes() {
    let host = format!("http://127.0.0.1:{}", closed_port());
    for (args, expect) in [
        (
            vec!["--arrival-rate", "0"],
            "--arrival-rate 0 must be above 0",
        ),
        (
            vec!["--arrival-rate", "-3"],
            "--arrival-rate -3 must be above 0",
        ),
        (vec!["--max-visits", "0"], "--max-visits must be at least 1"),
        (
            vec!["--newcomer-share", "1.5"],
            "--newcomer-share 1.5 is not a share",
        ),
        (
            vec!["--signed-out-share", "-0.1"],
            "--signed-out-share -0.1 is not a share",
        ),
        (
            vec!["--logout-share", "2"],
            "--logout-share 2 is not a share",
        ),
        (
            vec!["--slo", "uploads.p95=1s"],
            "unknown part \"uploads.p95\"",
        ),
        (vec!["--slo", "reads.p99=1s"], "only p95 is judged"),
        (vec!["--slo", "sign-in.p95=0ms"], "must be above 0"),
    ] {
        let mut all = vec!["load", "--host", &host];
        all.extend(args.iter().copied());
        let (ok, err, _, _dir) = run(&all);
        assert!(!ok, "{all:?} should fail");
        assert!(err.contains(expect), "{all:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            !err.contains("cannot reach"),
            "checked before any host: {err}"
        );
    }
    assert_clean_failure(
        &[
            "breaking",
            "--host",
            &host,
            "--arrival-rate",
            "4",
            "--max-arrival-rate",
            "0",
        ],
        "--max-arrival-rate must be above 0",
    );
    let o = Command::new(BIN)
        .args(["lab", "hash-cost", "--arrival-rate", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--arrival-rate must be above 0"),
        "{err}"
    );
}

#[test]
fn help_has_examples() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("Examples:") && text.contains("breaking"),
        "{text}"
    );
}

/// A repeat count below 1 is refused in one line, before anything starts.
#[test]
fn a_lab_repeat_below_one_is_refused() {
    for bad in ["0", "-1"] {
        let o = Command::new(BIN)
            .args(["lab", "hash-cost", "--repeat", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "--repeat {bad}: {err}");
        assert!(
            err.contains("--repeat must be at least 1"),
            "--repeat {bad}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn unknown_lab_experiment() {
    let o = Command::new(BIN)
        .args(["lab", "no-such-thing"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("unknown experiment") && err.contains("stage1-vs-stage2"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn lab_without_postgres_says_so() {
    let pg = format!("postgres://postgres@127.0.0.1:{}", closed_port());
    let o = Command::new(BIN)
        .args(["lab", "cache-impact", "--postgres", &pg])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("needs Postgres") && err.contains("does not answer"),
        "{err}"
    );
}

/// A whole (tiny) lab run on simulated hosts (stage1-vs-stage2's own
/// topology): both stages seeded and started by the lab, stage 2 on its
/// own Postgres and Redis, a report with the method's sections and the
/// hosts table, one result file per variant marked with the experiment and
/// its hosts, each step with every host's CPU from its cgroup, and nothing
/// left running, stored or grouped.
#[test]
fn a_tiny_lab_run_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let docs = dir.path().join("docs");
    let o = Command::new(BIN)
        .args([
            "lab",
            "stage1-vs-stage2",
            "--dataset-users",
            "100",
            "--dataset-photos",
            "500",
        ])
        .args([
            "--dataset-likes",
            "500",
            "--dataset-follows-per-user",
            "5",
            "--arrival-rate",
            "2",
        ])
        .args(["--max-arrival-rate", "8", "--people", "20"])
        // A one-second warm-up keeps that path run without spending the
        // default 20 s on each of the six runs.
        .args(["--step-secs", "2", "--bisect", "0", "--repeat", "2"])
        .args(["--warmup-secs", "1"])
        .arg("--out-dir")
        .arg(&out)
        .arg("--docs-dir")
        .arg(&docs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = o.id();
    let o = o.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let chapter = std::fs::read_to_string(docs.join("stage1-vs-stage2.md")).unwrap();
    for section in [
        "## Baseline and load",
        "## The change",
        "## Comparison",
        "## Observation",
        "## Trade-off",
        "## Limits of this experiment",
    ] {
        assert!(chapter.contains(section), "{section} in {chapter}");
    }
    assert!(
        chapter.contains("### The hosts") && chapter.contains("| hosts (cores promised) |"),
        "{chapter}"
    );
    assert!(
        chapter.contains("| breaking point |")
            && chapter.contains("| visits in progress (mean / peak) |")
            && chapter.contains("| GET /api/feed |")
            && chapter.contains("visits started per second (open model), 2 doubling up to 8"),
        "{chapter}"
    );
    let files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        chapter.contains("**Repeats.** Each variant ran 2 times in interleaved order")
            && chapter.contains("### Spread over the repeats")
            && chapter.contains("### Differences"),
        "{chapter}"
    );
    for (variant, hosts) in [
        ("baseline", vec!["app-1", "generator"]),
        ("stage-2", vec!["app-1", "postgres", "redis", "generator"]),
        (
            "stage-2-two-app-hosts",
            vec!["app-1", "app-2", "postgres", "redis", "generator"],
        ),
    ] {
        let f = files
            .iter()
            .find(|f| {
                // The time follows the label: "stage-2-" must not match
                // "stage-2-two-app-hosts-".
                f.strip_prefix(&format!("lab-stage1-vs-stage2-{variant}-"))
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                    && f.ends_with(".json")
            })
            .unwrap_or_else(|| panic!("{variant} result in {files:?}"));
        // Two repeats, each its own file: -r1 and -r2.
        assert!(f.ends_with("-r1.json") || f.ends_with("-r2.json"), "{f}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(f)).unwrap()).unwrap();
        assert_eq!(v["experiment"]["name"], "stage1-vs-stage2");
        assert_eq!(v["mode"], "breaking");
        assert_eq!(v["load"]["model"], "open");
        assert!(v["steps"].as_array().unwrap().len() >= 3);
        assert_eq!(v["steps"][0]["arrivalRate"], 2.0);
        let named: Vec<&str> = v["topology"]["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap())
            .collect();
        assert_eq!(named, hosts, "{variant}");
        for step in v["steps"].as_array().unwrap() {
            let measured: Vec<&str> = step["hostCpu"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["name"].as_str().unwrap())
                .collect();
            assert_eq!(measured, hosts, "{variant}");
            // Every host did some work, none beyond its budget.
            for h in step["hostCpu"].as_array().unwrap() {
                let share = h["budgetShare"].as_f64().unwrap();
                assert!(share > 0.0 && share <= 1.05, "{variant}: {h}");
            }
        }
        // Sessions last: sign-ins are a small share, and it is recorded.
        let share = v["signInShare"].as_f64().unwrap();
        assert!((0.0..=0.1).contains(&share), "sign-in share {share}");
    }
    let report = files
        .iter()
        .find(|f| f.ends_with(".report.json"))
        .expect("report");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(report)).unwrap()).unwrap();
    assert_eq!(report["schema"], "minigram.lab/1");
    assert_eq!(report["variants"].as_array().unwrap().len(), 3);
    assert_eq!(report["repeats"], 2);
    // Interleaved: round 1 ran every variant before round 2 began.
    let times: Vec<(u64, String)> = files
        .iter()
        .filter(|f| f.ends_with(".json") && !f.ends_with(".report.json"))
        .map(|f| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join(f)).unwrap()).unwrap();
            (
                v["experiment"]["repeat"].as_u64().unwrap(),
                v["startedAt"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(times.len(), 6, "{files:?}");
    let last_of_first = times
        .iter()
        .filter(|t| t.0 == 1)
        .map(|t| &t.1)
        .max()
        .unwrap();
    let first_of_second = times
        .iter()
        .filter(|t| t.0 == 2)
        .map(|t| &t.1)
        .min()
        .unwrap();
    assert!(last_of_first <= first_of_second, "{times:?}");
    for v in report["variants"].as_array().unwrap() {
        let repeats = v["repeats"].as_array().unwrap();
        assert_eq!(repeats.len(), 2, "{v}");
        assert_eq!(v["spread"]["repeats"], 2);
        for figure in ["rps", "p95Ms"] {
            let s = &v["spread"][figure];
            let values: Vec<f64> = repeats
                .iter()
                .map(|r| r[figure].as_f64().unwrap())
                .collect();
            assert_eq!(s["values"].as_array().unwrap().len(), 2, "{s}");
            let (lo, hi) = (values[0].min(values[1]), values[0].max(values[1]));
            let median = s["median"].as_f64().unwrap();
            assert_eq!(s["min"].as_f64().unwrap(), lo);
            assert_eq!(s["max"].as_f64().unwrap(), hi);
            assert!(lo <= median && median <= hi, "{figure}: {s}");
            assert!((median - (lo + hi) / 2.0).abs() < 1e-9, "{figure}: {s}");
        }
        // The variant's file is one of its repeats' files.
        assert!(
            repeats.iter().any(|r| r["resultFile"] == v["resultFile"]),
            "{v}"
        );
    }
    // stage1-vs-stage2 names three comparisons, each by req/s and, where
    // the SLO broke in both repeats of both sides, by the breaking point.
    let comparisons = report["comparisons"].as_array().unwrap();
    let by_rps = comparisons.iter().filter(|c| c["figure"] == "rps").count();
    assert_eq!(by_rps, 3, "{comparisons:?}");
    assert!(comparisons.len() <= 6, "{comparisons:?}");
    for c in comparisons {
        let d = &c["difference"];
        assert_eq!(d["pairs"], 2, "{c}");
        let (lo, hi) = (d["low"].as_f64().unwrap(), d["high"].as_f64().unwrap());
        let reading = d["reading"].as_str().unwrap();
        let expected = if lo > 1.0 {
            "higher"
        } else if hi < 1.0 {
            "lower"
        } else {
            "no-measurable-difference"
        };
        assert_eq!(reading, expected, "{c}");
    }
    assert!(
        !files.iter().any(|f| f.ends_with(".partial")),
        "no half-written file"
    );
    let groups = std::fs::read_dir("/sys/fs/cgroup/cpu")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy() == format!("minigram-lab-{pid}"))
        .count();
    assert_eq!(groups, 0, "the run's cgroups are gone");
}

/// A tiny index-impact run: the fixed-load method on three dataset sizes,
/// each seeded fresh, with and without the feed index; the report draws
/// the cost curve and each variant's file records its own dataset.
#[test]
fn a_tiny_index_impact_run_draws_the_cost_curve() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let o = Command::new(BIN)
        .args(["lab", "index-impact", "--dataset-users", "200"])
        .args(["--dataset-photos", "1000", "--dataset-likes", "500"])
        .args(["--dataset-follows-per-user", "5", "--fixed-rate", "4"])
        .args(["--people", "20"])
        .args(["--step-secs", "2", "--repeat", "1", "--warmup-secs", "1"])
        .arg("--out-dir")
        .arg(&out)
        .arg("--docs-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let chapter = std::fs::read_to_string(dir.path().join("index-impact.md")).unwrap();
    assert!(chapter.contains("### The cost curve"), "{chapter}");
    assert!(
        chapter.contains(
            "| load (fixed) | 4 visits/s | 4 visits/s | 4 visits/s | 4 visits/s | 4 visits/s | 4 visits/s |"
        ),
        "{chapter}"
    );
    // Three sizes, ascending: 100, 1000 and 4000 photos.
    let rows: Vec<&str> = chapter
        .lines()
        .skip_while(|l| !l.starts_with("### The cost curve"))
        .filter(|l| l.starts_with("| ") && !l.starts_with("| photos"))
        .collect();
    assert!(rows[0].starts_with("| 100 | 20 |"), "{rows:?}");
    assert!(rows[1].starts_with("| 1000 | 200 |"), "{rows:?}");
    assert!(rows[2].starts_with("| 4000 | 800 |"), "{rows:?}");
    let mut seen = 0;
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // The small dataset runs after the 1x one: its users must not be
        // the 1x run's (user21..user200 do not exist there).
        if name.starts_with("lab-index-impact-no-index-0.1x-") && name.ends_with(".json") {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            assert_eq!(v["mode"], "load");
            assert_eq!(v["dataset"]["photos"], 100);
            assert_eq!(v["steps"].as_array().unwrap().len(), 1);
            // Every seeded account the journeys used existed at this size
            // (the people were signed in before the load, or it failed).
            assert_eq!(v["load"]["people"], 20, "{v}");
            assert_eq!(v["steps"][0]["errorRate"], 0.0, "{v}");
            seen += 1;
        }
    }
    assert_eq!(seen, 1);
}
