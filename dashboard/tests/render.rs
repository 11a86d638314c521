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
    // The USL fit of each breaking run, as a table.
    let usl = &html[html.find("<section id=\"usl\">").expect("a USL section")..];
    assert_eq!(
        usl.matches("<tr class=\"usl\">").take(3).count(),
        2,
        "one fit per breaking run"
    );
    assert!(usl.contains("<td>stage-1 breaking</td>"));
    // Without lab reports there is no first-screen answer, and it says so.
    assert!(html.contains("No <code>stage1-vs-stage2</code> lab run"));
    let history = &html[html.find("<details id=\"history\">").expect("a history")..];
    assert!(
        history.contains("<section id=\"usl\">") && history.contains("<section id=\"spikes\">")
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
    assert!(
        dom.contains("Breaking points of every run") && dom.contains("<details id=\"history\">")
    );
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

/// `dashboard report [--check]` on the documents under `root`, from the
/// repository's results.
fn report_in(root: &Path, check: bool) -> std::process::Output {
    report_from(&repo().join("results"), root, check)
}

/// `dashboard report` of `results` into `root`.
fn report_from(results: &Path, root: &Path, check: bool) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.arg("--results")
        .arg(results)
        .arg("report")
        .arg("--root")
        .arg(root);
    if check {
        c.arg("--check");
    }
    c.output().unwrap()
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
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    let stale = "# t\n\n<!-- report:storage:stage-1 -->\n| write a photo row | 1 µs | made up |\n<!-- /report:storage:stage-1 -->\n\nafter\n";
    std::fs::write(dir.path().join("README.md"), stale).unwrap();
    std::fs::write(dir.path().join("docs/x.md"), stale).unwrap();
    let report = |check: bool| report_in(dir.path(), check);
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
    let report = |check: bool| report_in(dir.path(), check);
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

/// The page as a person sees it, from the repository's real results,
/// opened from disk in headless Chromium: the first screen answers "where
/// does each stage break, and why?" with one bar per variant of the newest
/// stage1-vs-stage2 run; every experiment has a section with its charts;
/// no chart carries more than four series; no "inf", NaN or absurd number
/// in the text. Screenshots of the first screen and of one experiment's
/// section go to the artifacts folder.
#[test]
fn the_first_screen_answers_in_a_browser() {
    let results = repo().join("results");
    let mut experiments = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&results).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".report.json") {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
            // Names end in their time: the last one read is the newest.
            experiments.insert(v["experiment"].as_str().unwrap().to_owned(), v);
        }
    }
    let headline = &experiments["stage1-vs-stage2"];
    let variants = headline["variants"].as_array().unwrap().len();

    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("dashboard.html");
    std::fs::write(&page, render(&results)).unwrap();
    let url = format!("file://{}", page.display());
    let dom = contract::browser::chromium(&["--dump-dom"], &url);
    assert!(!dom.contains("<script"), "no script");

    let first = &dom[dom
        .find("<section id=\"headline\">")
        .expect("a headline section")..];
    let first = &first[..first.find("</section>").unwrap()];
    assert!(first.contains("Where does each stage break, and why?"));
    let bars = &first[first
        .find("class=\"headline-bars\"")
        .expect("the headline picture")..];
    let bars = &bars[..bars.find("</svg>").unwrap()];
    assert_eq!(
        bars.matches("height=\"26\"").count(),
        variants,
        "one bar per variant of the newest stage1-vs-stage2 run"
    );
    assert!(
        first.contains("saturated first"),
        "the sentence names causes"
    );

    let sections: Vec<&str> = dom.split("<section class=\"experiment\"").skip(1).collect();
    assert_eq!(
        sections.len(),
        experiments.len() - 1,
        "one section per other experiment"
    );
    for s in &sections {
        let s = &s[..s.find("</section>").unwrap()];
        assert!(
            s.contains("<figure class=\"chart\""),
            "charts in {}",
            &s[..60]
        );
        assert!(s.contains("the chapter</a>"));
    }
    let charts: Vec<&str> = dom.split("<figure class=\"chart\"").skip(1).collect();
    assert!(charts.len() >= 2 * experiments.len());
    for chart in charts {
        let chart = &chart[..chart.find("</figure>").unwrap()];
        let series = chart.matches(r#"width="18" height="10""#).count();
        assert!((1..=4).contains(&series), "{series} series in a chart");
    }
    let text = strip_tags(&dom);
    for word in text.split(|c: char| !c.is_alphanumeric() && c != '.') {
        let lower = word.to_lowercase();
        assert!(lower != "inf" && lower != "nan", "{word:?} on the page");
        // A number (not a file name's time stamp) of 13 digits or more is
        // an unsupported extrapolation, not a measurement.
        if let Ok(x) = word.trim_end_matches('.').parse::<f64>() {
            assert!(
                x.is_finite() && x.abs() < 1e12,
                "an absurd number on the page: {word}"
            );
        }
    }

    // The first screen as it opens; one experiment's section alone (a
    // headless screenshot does not scroll to an anchor), with the page's
    // own styles.
    let html = std::fs::read_to_string(&page).unwrap();
    let head = &html[..html.find("<body>").unwrap()];
    let at = html
        .find("<section class=\"experiment\" id=\"exp-cache-impact\">")
        .expect("the cache-impact section");
    let end = at + html[at..].find("</section>").unwrap() + "</section>".len();
    let one = out.path().join("experiment.html");
    std::fs::write(
        &one,
        format!("{head}<body><main>{}</main></body></html>", &html[at..end]),
    )
    .unwrap();
    let dir = contract::browser::artifacts_dir();
    for (file, url, size) in [
        (
            "dashboard-first-screen.png",
            url.clone(),
            "--window-size=1280,1000",
        ),
        (
            "dashboard-experiment.png",
            format!("file://{}", one.display()),
            "--window-size=1280,900",
        ),
    ] {
        let shot = dir.join(file);
        contract::browser::chromium(&[&format!("--screenshot={}", shot.display()), size], &url);
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{file}");
        eprintln!("screenshot: {}", shot.display());
    }
}

fn strip_tags(html: &str) -> String {
    let body = &html[html.find("<body").unwrap_or(0)..];
    let mut out = String::with_capacity(body.len());
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// `report --check` covers the dashboard page too: a page that is not what
/// the result files give is caught, and `report` redraws it.
#[test]
fn check_catches_a_stale_dashboard_page() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    for e in std::fs::read_dir(repo().join("results")).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".json") {
            std::fs::copy(e.path(), results.join(e.file_name())).unwrap();
        }
    }
    let page = results.join("dashboard.html");
    std::fs::write(&page, "<p>an old page</p>").unwrap();
    let report = |check: bool| report_from(&results, dir.path(), check);
    let o = report(true);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("dashboard.html"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&page).unwrap(),
        "<p>an old page</p>"
    );
    assert!(report(false).status.success());
    let redrawn = std::fs::read_to_string(&page).unwrap();
    assert!(
        redrawn.contains("from the result files up to"),
        "dated by its files"
    );
    assert!(
        report(true).status.success(),
        "up to date after the rewrite"
    );
}

/// The cross-check block (invented numbers): each generator's median and
/// range over its repeats, ours ÷ Locust's paired by repeat, and whether
/// that is within the lab's 20 %.
#[test]
fn crosscheck_block_pairs_the_generators_by_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let run = |generator: &str, repeat: usize, users: f64, rps: f64| {
        serde_json::json!({
            "generator": generator, "repeat": repeat, "users": users, "rps": rps,
            "brokenBy": "reads p95 = 300 ms > 250 ms", "generatorCoresAtFailure": 0.5,
        })
    };
    let file = serde_json::json!({
        "schema": "minigram.crosscheck/1", "commit": "abc", "startedAt": "2026-12-07T00:00:00Z",
        "stage": "stage-1", "testBed": "shared box", "model": "closed", "repeats": 2,
        "machine": {"cores": 2, "memoryMib": 1, "cpu": "test cpu"},
        "runs": [
            run("loadtests (Goose)", 1, 100.0, 400.0), run("locust 2.47.0", 1, 80.0, 300.0),
            run("locust 2.47.0", 2, 100.0, 320.0), run("loadtests (Goose)", 2, 120.0, 420.0),
        ],
    });
    std::fs::write(
        dir.path().join("crosscheck-locust-20261207T000000Z.json"),
        file.to_string(),
    )
    .unwrap();
    let src = dashboard::report::Sources::load(dir.path()).unwrap();
    let block = dashboard::report::block(&src, "crosscheck", "").unwrap();
    assert!(
        block.contains(
            "| loadtests (Goose) | 2 | 110 (100–120) | 410 (400–420) | 0.50 (0.50–0.50) | reads (2 of 2) |"
        ),
        "{block}"
    );
    assert!(
        block.contains("| locust 2.47.0 | 2 | 90 (80–100) |"),
        "{block}"
    );
    // Paired: 100/80 = 1.25, 120/100 = 1.20; medians 110/90 = 1.22.
    assert!(
        block.contains("breaking point: 1.22× (paired repeats 1.20–1.25×) — **not** within"),
        "{block}"
    );
    assert!(block.contains("req/s at the SLO: 1.32×"), "{block}");
    let page = render(dir.path());
    assert!(
        !page.contains("unknown schema"),
        "a cross-check is not skipped"
    );
}
