//! Observability checked with real tools: `/metrics` through the Prometheus
//! client's own parser (Python `prometheus_client`), and `/metrics.html` in
//! a real headless Chromium while load runs, with a screenshot kept.
//! Both tools are required: without them these cases fail, never skip.

use reqwest::Method;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use super::browser::artifacts_dir;
use super::browser::chromium;
use super::{Backend, TestApp, spawn_app};

fn backend_name<B>() -> String {
    let full = std::any::type_name::<B>();
    full.rsplit("::").next().unwrap_or(full).to_lowercase()
}

/// Some steady traffic of every kind for `secs` seconds.
async fn background_load<B: Backend>(app: &TestApp<B>, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    load_while(app, || Instant::now() < deadline).await
}

/// Keeps reading, liking and 404ing while `go()` says so.
async fn load_while<B: Backend>(app: &TestApp<B>, go: impl Fn() -> bool) {
    let user = app.make_user("loadgen").await;
    let photo = app.posted_photo(&user, "load").await;
    let like = format!("/api/photos/{}/like", photo["id"]);
    let mut i = 0u64;
    while go() {
        i += 1;
        app.get("/api/explore", None).await;
        app.get("/api/feed", Some(&user.token)).await;
        app.get(&format!("/api/users/{}", user.id), None).await;
        app.get("/api/users/nope", None).await; // a steady trickle of 4xx
        let method = if i.is_multiple_of(2) {
            Method::POST
        } else {
            Method::DELETE
        };
        app.send(method, &like, Some(&user.token)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `/metrics` parses with the Prometheus client's parser and has the
/// families DESIGN.md names.
pub async fn prometheus_text_parses<B: Backend>() {
    let app = spawn_app::<B>().await;
    background_load(&app, 2).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/check_prometheus.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .args([
            "http_server_request_duration_seconds",
            "http_server_active_requests",
            "minigram_password_hash_queue",
            "process_resident_memory_bytes",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is required to check /metrics (scripts/test.sh installs its parser)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "/metrics failed the Prometheus parser: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `data-points` of the first polyline after `marker` in the DOM.
fn points_after(dom: &str, marker: &str) -> usize {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the page"));
    let rest = &dom[at..];
    let p = rest.find("data-points=\"").expect("a polyline") + 13;
    rest[p..].split('"').next().unwrap().parse().unwrap()
}

fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("#{id} not in the page"))
        + marker.len();
    dom[at..].split('<').next().unwrap().to_owned()
}

/// A real browser renders the live page while load runs: the charts have
/// data points, the numbers are not zero, the route table is filled and
/// the stage's saturation panels are there. Saves a screenshot.
pub async fn live_page_in_a_browser<B: Backend>() {
    let app = spawn_app::<B>().await;
    let url = app.url("/metrics.html");
    // The load runs until the browser is done, however long it takes to
    // start (a first start after installing it can take seconds).
    let browsing = std::sync::atomic::AtomicBool::new(true);
    let load = load_while(&app, || browsing.load(std::sync::atomic::Ordering::Relaxed));
    let browse = async {
        tokio::time::sleep(Duration::from_secs(4)).await; // let a few seconds of samples pile up
        let u = url.clone();
        let dom = tokio::task::spawn_blocking(move || {
            chromium(&["--dump-dom", "--virtual-time-budget=3000"], &u)
        })
        .await
        .unwrap();
        let shot = artifacts_dir().join(format!("metrics-{}.png", backend_name::<B>()));
        let (u, s) = (url.clone(), shot.clone());
        tokio::task::spawn_blocking(move || {
            chromium(
                &[
                    &format!("--screenshot={}", s.display()),
                    "--window-size=1280,1900",
                    "--virtual-time-budget=3000",
                ],
                &u,
            )
        })
        .await
        .unwrap();
        browsing.store(false, std::sync::atomic::Ordering::Relaxed);
        (dom, shot)
    };
    let ((), (dom, shot)) = tokio::join!(load, browse);

    assert!(
        points_after(&dom, "data-chart=\"rps\"") >= 3,
        "the RPS chart has points"
    );
    assert!(points_after(&dom, "data-chart=\"latency\"") >= 3);
    assert!(points_after(&dom, "data-chart=\"errors\"") >= 3);
    let rps: f64 = text_of(&dom, "t-rps")
        .replace(',', "")
        .parse()
        .expect("a number in the RPS tile");
    assert!(rps > 0.0, "RPS tile is {rps}");
    let latency = text_of(&dom, "t-lat");
    assert!(
        latency
            .split(" / ")
            .any(|v| v.parse::<f64>().is_ok_and(|x| x > 0.0)),
        "latency tile: {latency}"
    );
    assert!(
        dom.contains("data-chart=\"fig-hash.inFlight\""),
        "the hash-queue panel"
    );
    assert!(
        dom.matches("data-chart=\"fig-").count() >= 3,
        "the stage's saturation panels"
    );
    assert!(dom.contains("<td>/api/feed</td>"), "the per-route table");
    // Its last column: round trips per request to Postgres / Redis.
    let feed_row = dom.split("<td>/api/feed</td>").nth(1).unwrap();
    let feed_row = feed_row.split("</tr>").next().unwrap();
    let trips = feed_row
        .rsplit("<td>")
        .next()
        .unwrap()
        .trim_end_matches("</td>");
    assert!(
        trips
            .split(" / ")
            .map(|n| n.parse::<f64>().is_ok_and(|n| n >= 0.0))
            .filter(|ok| *ok)
            .count()
            == 2,
        "round trips on the feed's row: {trips:?}"
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "screenshot {}",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.display());
}

/// Generates the observability cases for a backend (used by `contract_tests!`).
#[macro_export]
macro_rules! observe_contract_tests {
    ($backend:ty) => {
        $crate::__contract_cases!($backend; observe;
            prometheus_text_parses,
            live_page_in_a_browser
        );
    };
}
