//! The dashboard from fixture result files (invented numbers, made only to
//! exercise the page: real results come from the lab's commands), from the
//! repository's real `results/`, and in a real browser from disk.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dashboard");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn render(dir: &Path) -> String {
    let results = dashboard::load(dir).unwrap();
    dashboard::render(&results, "test".into()).unwrap()
}

/// Each stage's breaking point, every chart with its series, the
/// per-request breakdown and the before/after table are on the page.
#[test]
fn fixtures_render_every_part() {
    let html = render(&fixtures());
    for (stage, users) in [("stage-1", "32"), ("stage-2", "64")] {
        let row = html
            .split("<tr class=\"run\"")
            .find(|r| r.contains(&format!("data-stage=\"{stage}\"")) && r.contains("breaking"))
            .unwrap_or_else(|| panic!("no row for {stage}"));
        assert!(
            row.contains(&format!(
                "<td class=\"n breaking-users\">{users} users</td>"
            )),
            "{stage}: {row}"
        );
    }
    assert!(html.contains("password hashing (queue 240)") && html.contains("server CPU (190 %)"));
    for chart in ["throughput", "p95", "errors"] {
        let at = html
            .find(&format!("data-chart=\"{chart}-closed\""))
            .unwrap_or_else(|| panic!("chart {chart}"));
        let figure = &html[at..at + html[at..].find("</figure>").unwrap()];
        assert!(figure.contains("<svg"), "{chart} has an SVG");
        assert!(
            figure.matches("<circle").count() >= 9,
            "{chart} has the data points"
        );
        assert!(
            figure.contains("fixture CPU") && figure.contains("fixture0001"),
            "{chart} is labelled"
        );
    }
    assert!(html.contains("Throughput vs users"));
    // The USL fit of each breaking run, as a table and a dashed curve.
    let usl = &html[html.find("<section id=\"usl\">").expect("a USL section")..];
    assert_eq!(
        usl.matches("<tr class=\"usl\">").take(3).count(),
        2,
        "one fit per breaking run"
    );
    assert!(usl.contains("<td>stage-1 breaking</td>"));
    assert!(
        html.contains("USL fit (σ"),
        "the fitted curve is in the chart's legend"
    );
    // A spike is a row of its own, not a curve against users.
    let spikes = &html[html
        .find("<section id=\"spikes\">")
        .expect("a spike section")..];
    assert!(spikes.contains("<td class=\"n\">4321</td>") && spikes.contains("41.0 / 77.0"));
    assert_eq!(
        html.matches("<tr class=\"run\"").count(),
        4,
        "the spike is not a breaking row"
    );
    assert!(html.contains("<td>GET /api/feed</td>") && html.contains("<td>POST /api/login</td>"));
    let exp = &html[html
        .find("<table class=\"experiment\">")
        .expect("an experiment table")..];
    assert!(html.contains("cache-impact") && html.contains("change: feed cache on"));
    assert!(exp.contains("<td>throughput (req/s)</td><td class=\"n\">900.0</td><td class=\"n\">1100.0</td><td class=\"n\">+22.2 %</td>"));
    assert!(
        html.contains("unrelated.json: unknown schema"),
        "unknown files are named, not hidden"
    );
    assert!(
        !html.contains("<script"),
        "no script: it opens from disk anywhere"
    );
}

/// The repository's own results (the benchmark files) render too.
#[test]
fn real_results_render() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
    let html = render(&dir);
    assert!(
        html.contains("Stage 1 benchmark") && html.contains("Stage 2 benchmark"),
        "benchmarks shown"
    );
}

/// The binary writes the page, says where, and fails in one clear line on
/// a missing directory.
#[test]
fn binary_writes_the_page() {
    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("index.html");
    let run = Command::new(BIN)
        .arg("--results")
        .arg(fixtures())
        .arg("--out")
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("wrote"));
    assert!(
        std::fs::read_to_string(&page)
            .unwrap()
            .contains("Breaking points")
    );
    let bad = Command::new(BIN)
        .args(["--results", "/nonexistent/dir"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("cannot read the results directory") && !err.contains("panicked"),
        "{err}"
    );
}

/// Headless Chromium opens the page from disk (no server, no network) and
/// renders the charts; a screenshot is kept.
#[test]
fn opens_from_disk_in_a_browser() {
    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("dashboard.html");
    std::fs::write(&page, render(&fixtures())).unwrap();
    let shot = contract::browser::artifacts_dir().join("dashboard.png");
    let url = format!("file://{}", page.display());
    let chromium = |args: &[&str]| contract::browser::chromium(args, &url);
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.contains("Throughput vs users") && dom.matches("<svg").count() >= 3);
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,2400",
    ]);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000);
    eprintln!("screenshot: {}", shot.display());
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every generated table in README.md and docs/ is what the committed
/// result files give: no figure in the docs was typed by hand or left
/// behind by an older run.
#[test]
fn readme_and_docs_match_the_result_files() {
    let o = Command::new(BIN)
        .args(["report", "--check", "--root"])
        .arg(repo())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for doc in ["README.md", "docs/stage-1.md", "docs/stage-2.md"] {
        assert!(
            err.contains(&format!("{doc}: ")),
            "{doc} has generated blocks: {err}"
        );
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for key in [
        "headline",
        "lab-summary",
        "storage:stage-1",
        "storage:stage-2",
    ] {
        assert!(readme.contains(&format!("<!-- report:{key} -->")), "{key}");
    }
}

/// A block whose figures differ from the results is caught by `--check`
/// (which changes nothing) and rewritten by `report`; links are made
/// relative to the document; an unknown block is a one-line error.
#[test]
fn report_rewrites_a_stale_block_and_check_catches_it() {
    let dir = tempfile::tempdir().unwrap();
    let results = repo().join("results");
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    let stale = "# t\n\n<!-- report:storage:stage-1 -->\n| write a photo row | 1 µs | made up |\n<!-- /report:storage:stage-1 -->\n\nafter\n";
    std::fs::write(dir.path().join("README.md"), stale).unwrap();
    std::fs::write(dir.path().join("docs/x.md"), stale).unwrap();
    let report = |check: bool| {
        let mut c = Command::new(BIN);
        c.arg("--results")
            .arg(&results)
            .arg("report")
            .arg("--root")
            .arg(dir.path());
        if check {
            c.arg("--check");
        }
        c.output().unwrap()
    };
    let o = report(true);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("README.md") && err.contains("do not match"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("README.md")).unwrap(),
        stale
    );

    let o = report(false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(
        !readme.contains("made up") && readme.ends_with("\n\nafter\n"),
        "{readme}"
    );
    assert!(
        readme.contains("| operation | mean | target | status |"),
        "{readme}"
    );
    assert!(
        readme.contains("](results/bench-storage-stage-1.json)"),
        "{readme}"
    );
    let doc = std::fs::read_to_string(dir.path().join("docs/x.md")).unwrap();
    assert!(
        doc.contains("](../results/bench-storage-stage-1.json)"),
        "{doc}"
    );
    assert!(
        report(true).status.success(),
        "up to date after the rewrite"
    );

    std::fs::write(
        dir.path().join("README.md"),
        "<!-- report:nonsense -->\n<!-- /report:nonsense -->\n",
    )
    .unwrap();
    let o = report(false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("unknown report block \"nonsense\""),
        "{err}"
    );
}

/// Every chapter under docs/experiments/ shows its result as a picture: at
/// least one embedded SVG, present beside it, drawn from the result files
/// (`report --check` above compares the bytes), with no more than
/// `SERIES_PER_CHART` variants in its legend.
#[test]
fn every_chapter_embeds_its_charts() {
    let dir = repo().join("docs/experiments");
    let mut chapters = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        chapters += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let images: Vec<&str> = text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .filter(|link| link.ends_with(".svg"))
            .collect();
        assert!(!images.is_empty(), "{} embeds no chart", path.display());
        for image in images {
            let svg = std::fs::read_to_string(dir.join(image))
                .unwrap_or_else(|e| panic!("{}: {image}: {e}", path.display()));
            assert!(svg.starts_with("<svg"), "{image}");
            // One filled legend swatch per variant: 18 × 10 px rectangles.
            let swatches = svg.matches(r#"width="18" height="10""#).count();
            assert!(
                (1..=dashboard::chapter_charts::SERIES_PER_CHART).contains(&swatches),
                "{image}: {swatches} series"
            );
        }
    }
    assert!(chapters >= 10, "{chapters} chapters");
}

/// A chart file that is not what the result files give is caught by
/// `report --check` and redrawn by `report`.
#[test]
fn check_catches_a_stale_chart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docs/experiments")).unwrap();
    let chapter =
        "# c\n\n<!-- report:charts:cache-impact -->\n<!-- /report:charts:cache-impact -->\n";
    let doc = dir.path().join("docs/experiments/cache-impact.md");
    std::fs::write(&doc, chapter).unwrap();
    let report = |check: bool| {
        let mut c = Command::new(BIN);
        c.arg("--results")
            .arg(repo().join("results"))
            .arg("report")
            .arg("--root")
            .arg(dir.path());
        if check {
            c.arg("--check");
        }
        c.output().unwrap()
    };
    assert!(report(false).status.success());
    let svg = dir.path().join("docs/experiments/cache-impact-p95.svg");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        std::fs::read_to_string(&doc)
            .unwrap()
            .contains("](cache-impact-p95.svg)")
    );
    assert!(report(true).status.success());
    std::fs::write(&svg, drawn.replace("baseline", "made up")).unwrap();
    let o = report(true);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cache-impact-p95.svg"));
    assert!(report(false).status.success());
    assert_eq!(std::fs::read_to_string(&svg).unwrap(), drawn);
}
