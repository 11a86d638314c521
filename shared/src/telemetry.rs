//! What the server measures about itself, three ways:
//!
//! - `/metrics`: Prometheus text (metrics + metrics-exporter-prometheus),
//!   with OpenTelemetry HTTP names: `http_server_request_duration_seconds`
//!   (explicit buckets) by method, route *template* and status, and
//!   `http_server_active_requests`; password hashing; the stage's own
//!   saturation figures (SQLite writer, pools, cache); process CPU and RSS.
//! - `/api/metrics`: a JSON snapshot over the last [`WINDOW_SECS`] seconds
//!   (never lifetime averages): RPS, errors by class, p50/p95/p99 overall
//!   and per route, the stage's figures, and with `?history=N` the last N
//!   one-second samples. The load tests read it at every step.
//! - `/metrics.html`: the live page, drawn from `/api/metrics` every second.
//!
//! Requests are recorded by a middleware into one-second slots of
//! HdrHistograms per route; a sampler task turns each finished second into
//! a history sample and refreshes the gauges.

use crate::figure_keys as keys;
use crate::timing::RoundTrips;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web;
use hdrhistogram::Histogram;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Length of the window `/api/metrics` summarizes.
pub const WINDOW_SECS: u64 = 10;
/// One-second samples kept for the live page (5 minutes).
pub const HISTORY: usize = 300;

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0,
];

/// The process-wide Prometheus recorder (metrics' recorder is global).
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .expect("valid buckets")
            .install_recorder()
            .expect("install the Prometheus recorder once")
    })
}

/// A saturation figure a stage reports (gauge: a level now; counter: a
/// running total, shown on the live page as a per-second rate).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figure {
    /// Key in JSON and on the live page, e.g. `postgres.waiting`.
    pub key: &'static str,
    /// What a person reads on the live page.
    pub title: &'static str,
    /// Prometheus name and labels.
    #[serde(skip)]
    pub metric: &'static str,
    #[serde(skip)]
    pub labels: &'static [(&'static str, &'static str)],
    pub counter: bool,
    pub value: f64,
}

impl Figure {
    pub fn gauge(key: &'static str, title: &'static str, metric: &'static str, value: f64) -> Self {
        Self {
            key,
            title,
            metric,
            labels: &[],
            counter: false,
            value,
        }
    }

    pub fn counter(
        key: &'static str,
        title: &'static str,
        metric: &'static str,
        value: f64,
    ) -> Self {
        Self {
            key,
            title,
            metric,
            labels: &[],
            counter: true,
            value,
        }
    }

    pub fn labels(mut self, labels: &'static [(&'static str, &'static str)]) -> Self {
        self.labels = labels;
        self
    }
}

/// Where the sampler reads the stage's figures from.
pub type FigureSource = Arc<dyn Fn() -> Vec<Figure> + Send + Sync>;

#[derive(Default)]
struct RouteSlot {
    count: u64,
    client_errors: u64,
    server_errors: u64,
    shed: u64,
    /// The slowest shed (503/429) answer: shedding must stay fast.
    shed_max_micros: u64,
    /// Round trips to the servers behind the app (stage 2), summed.
    trips: RoundTrips,
    micros: Option<Histogram<u64>>,
}

impl RouteSlot {
    /// This slot's latency histogram (µs, 1 µs to 10 min, 2 significant
    /// digits), made on first use.
    fn histogram(&mut self) -> &mut Histogram<u64> {
        self.micros
            .get_or_insert_with(|| Histogram::new_with_bounds(1, 600_000_000, 2).expect("bounds"))
    }

    fn record(&mut self, status: StatusCode, micros: u64, trips: RoundTrips) {
        self.count += 1;
        self.trips.postgres += trips.postgres;
        self.trips.redis += trips.redis;
        match status.as_u16() {
            429 | 503 => {
                self.shed += 1;
                self.shed_max_micros = self.shed_max_micros.max(micros);
            }
            500..=599 => self.server_errors += 1,
            400..=499 => self.client_errors += 1,
            _ => {}
        }
        let _ = self.histogram().record(micros.max(1));
    }

    fn merge(&mut self, other: &RouteSlot) {
        self.count += other.count;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        self.shed += other.shed;
        self.shed_max_micros = self.shed_max_micros.max(other.shed_max_micros);
        self.trips.postgres += other.trips.postgres;
        self.trips.redis += other.trips.redis;
        if let Some(h) = &other.micros {
            let mine = self.histogram();
            let _ = mine.add(h);
        }
    }
}

#[derive(Default)]
struct Slot {
    second: u64,
    routes: HashMap<(String, String), RouteSlot>,
}

/// One second of the server, for the live page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Seconds since the server started.
    pub t: u64,
    pub rps: f64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub shed: u64,
    /// The slowest shed answer of this second.
    pub shed_max_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub active: i64,
    pub cpu_percent: f64,
    pub rss_mib: f64,
    /// The stage's figures: gauges as levels, counters as per-second rates.
    pub figures: HashMap<&'static str, f64>,
}

/// Windowed numbers for one route.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStats {
    pub method: String,
    pub route: String,
    pub count: u64,
    pub rps: f64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub shed: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Round trips per request to Postgres and to Redis (stage 2; 0 where
    /// the route has none, and in stage 1).
    pub pg_trips: f64,
    pub redis_trips: f64,
}

/// The body of `/api/metrics`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub stage: &'static str,
    pub window_secs: f64,
    pub uptime_secs: f64,
    /// Requests answered since start (all routes, all statuses).
    pub requests_total: u64,
    pub rps: f64,
    /// Share of requests in the window answered 5xx or shed (503/429).
    pub error_rate: f64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub shed: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub active_requests: i64,
    pub password_hash_in_flight: u64,
    /// Password hashes done since start, and the CPU seconds they took
    /// (the hashing threads' own time): the price of a sign-in.
    pub password_hashes_total: u64,
    pub password_hash_cpu_seconds: f64,
    pub process_cpu_seconds: f64,
    pub process_rss_bytes: u64,
    pub figures: Vec<Figure>,
    pub routes: Vec<RouteStats>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Sample>,
}

pub struct Telemetry {
    stage: &'static str,
    started: Instant,
    active: AtomicI64,
    requests_total: AtomicU64,
    slots: Mutex<Vec<Slot>>,
    history: Mutex<VecDeque<Sample>>,
    figures: FigureSource,
    hash_in_flight: Arc<dyn Fn() -> usize + Send + Sync>,
    last_figures: Mutex<Vec<Figure>>,
}

fn quantile_ms(h: &Option<Histogram<u64>>, q: f64) -> f64 {
    h.as_ref()
        .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
}

/// This process's CPU seconds (user + system) and resident bytes.
pub fn process_usage() -> (f64, u64) {
    let Ok(stat) = procfs::process::Process::myself().and_then(|p| p.stat()) else {
        return (0.0, 0);
    };
    let cpu = (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64;
    (cpu, stat.rss * procfs::page_size())
}

impl Telemetry {
    pub fn new(
        stage: &'static str,
        figures: FigureSource,
        hash_in_flight: Arc<dyn Fn() -> usize + Send + Sync>,
    ) -> Arc<Self> {
        prometheus();
        Arc::new(Self {
            stage,
            started: Instant::now(),
            active: AtomicI64::new(0),
            requests_total: AtomicU64::new(0),
            slots: Mutex::new((0..=WINDOW_SECS).map(|_| Slot::default()).collect()),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            figures,
            hash_in_flight,
            last_figures: Mutex::new(Vec::new()),
        })
    }

    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn record(
        &self,
        method: &str,
        route: &str,
        status: StatusCode,
        took: Duration,
        trips: RoundTrips,
    ) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        let now = self.second();
        let mut slots = self.slots.lock().expect("metrics slots");
        let n = slots.len() as u64;
        let slot = &mut slots[(now % n) as usize];
        if slot.second != now {
            slot.second = now;
            slot.routes.clear();
        }
        let key = (method.to_owned(), route.to_owned());
        slot.routes
            .entry(key)
            .or_default()
            .record(status, took.as_micros() as u64, trips);
    }

    /// Merges the finished seconds in `[from, to)` per route.
    fn merged(&self, from: u64, to: u64) -> HashMap<(String, String), RouteSlot> {
        let slots = self.slots.lock().expect("metrics slots");
        let mut out: HashMap<(String, String), RouteSlot> = HashMap::new();
        for slot in slots.iter().filter(|s| s.second >= from && s.second < to) {
            for (k, v) in &slot.routes {
                out.entry(k.clone()).or_default().merge(v);
            }
        }
        out
    }

    /// The snapshot of the last finished [`WINDOW_SECS`] seconds, with the
    /// last `history` one-second samples.
    pub fn snapshot(&self, history: usize) -> Snapshot {
        let now = self.second();
        let from = now.saturating_sub(WINDOW_SECS);
        let window = (now - from).max(1) as f64;
        let routes = self.merged(from, now);
        let mut all = RouteSlot::default();
        let mut per_route: Vec<RouteStats> = routes
            .iter()
            .map(|((method, route), r)| {
                all.merge(r);
                RouteStats {
                    method: method.clone(),
                    route: route.clone(),
                    count: r.count,
                    rps: r.count as f64 / window,
                    client_errors: r.client_errors,
                    server_errors: r.server_errors,
                    shed: r.shed,
                    p50_ms: quantile_ms(&r.micros, 0.5),
                    p95_ms: quantile_ms(&r.micros, 0.95),
                    p99_ms: quantile_ms(&r.micros, 0.99),
                    pg_trips: f64::from(r.trips.postgres) / r.count.max(1) as f64,
                    redis_trips: f64::from(r.trips.redis) / r.count.max(1) as f64,
                }
            })
            .collect();
        per_route.sort_by(|a, b| b.count.cmp(&a.count).then(a.route.cmp(&b.route)));
        let (cpu, rss) = process_usage();
        let (hashes, hash_cpu) = crate::auth::hash_totals();
        let history = {
            let h = self.history.lock().expect("history");
            h.iter()
                .skip(h.len().saturating_sub(history))
                .cloned()
                .collect()
        };
        Snapshot {
            stage: self.stage,
            window_secs: window,
            uptime_secs: self.started.elapsed().as_secs_f64(),
            requests_total: self.requests_total.load(Ordering::Relaxed),
            rps: all.count as f64 / window,
            error_rate: if all.count == 0 {
                0.0
            } else {
                (all.server_errors + all.shed) as f64 / all.count as f64
            },
            client_errors: all.client_errors,
            server_errors: all.server_errors,
            shed: all.shed,
            p50_ms: quantile_ms(&all.micros, 0.5),
            p95_ms: quantile_ms(&all.micros, 0.95),
            p99_ms: quantile_ms(&all.micros, 0.99),
            active_requests: self.active.load(Ordering::Relaxed),
            password_hash_in_flight: (self.hash_in_flight)() as u64,
            password_hashes_total: hashes,
            password_hash_cpu_seconds: hash_cpu,
            process_cpu_seconds: cpu,
            process_rss_bytes: rss,
            figures: self.last_figures.lock().expect("figures").clone(),
            routes: per_route,
            history,
        }
    }

    /// Prometheus text for `/metrics`.
    pub fn render(&self) -> String {
        prometheus().render()
    }

    /// Once a second: a history sample of the second that just ended, fresh
    /// gauges, and the exporter's upkeep.
    fn sample(
        &self,
        previous: &mut HashMap<&'static str, f64>,
        last_cpu: &mut f64,
        trips_counted_to: &mut u64,
    ) {
        let now = self.second();
        let second = self.merged(now.saturating_sub(1), now);
        self.count_round_trips(trips_counted_to, now);
        let mut all = RouteSlot::default();
        for r in second.values() {
            all.merge(r);
        }
        let figures = (self.figures)();
        let mut levels = HashMap::new();
        for f in &figures {
            if f.counter {
                let before = previous.insert(f.key, f.value).unwrap_or(f.value);
                levels.insert(f.key, (f.value - before).max(0.0));
                metrics::counter!(f.metric, f.labels).absolute(f.value as u64);
            } else {
                levels.insert(f.key, f.value);
                metrics::gauge!(f.metric, f.labels).set(f.value);
            }
        }
        let hashing = (self.hash_in_flight)() as f64;
        metrics::gauge!("minigram_password_hash_queue").set(hashing);
        levels.insert(keys::HASH_IN_FLIGHT, hashing);
        let (cpu, rss) = process_usage();
        // A float running total: exported as a gauge (metrics' counters are integers).
        metrics::gauge!("process_cpu_seconds_total").set(cpu);
        metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
        let cpu_percent = ((cpu - *last_cpu) * 100.0).max(0.0);
        *last_cpu = cpu;
        *self.last_figures.lock().expect("figures") = figures;
        let sample = Sample {
            t: now,
            rps: all.count as f64,
            client_errors: all.client_errors,
            server_errors: all.server_errors,
            shed: all.shed,
            shed_max_ms: all.shed_max_micros as f64 / 1000.0,
            p50_ms: quantile_ms(&all.micros, 0.5),
            p95_ms: quantile_ms(&all.micros, 0.95),
            p99_ms: quantile_ms(&all.micros, 0.99),
            active: self.active.load(Ordering::Relaxed),
            cpu_percent,
            rss_mib: rss as f64 / (1024.0 * 1024.0),
            figures: levels,
        };
        let mut history = self.history.lock().expect("history");
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(sample);
        drop(history);
        prometheus().run_upkeep();
    }

    /// Adds the round trips of the seconds finished since the last call to
    /// `minigram_round_trips_total{http_route, server}` (one registry
    /// lookup per route and server a second, instead of one per request).
    /// Seconds older than the live window (a sampler stalled for longer)
    /// are no longer there and go uncounted.
    fn count_round_trips(&self, counted_to: &mut u64, now: u64) {
        for ((_, route), r) in self.merged(*counted_to, now) {
            for (server, n) in [("postgres", r.trips.postgres), ("redis", r.trips.redis)] {
                if n > 0 {
                    metrics::counter!(
                        "minigram_round_trips_total",
                        "http_route" => route.clone(),
                        "server" => server
                    )
                    .increment(u64::from(n));
                }
            }
        }
        *counted_to = now;
    }

    /// Starts the once-a-second sampler on the current tokio runtime.
    pub fn start_sampler(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut previous = HashMap::new();
            let mut last_cpu = process_usage().0;
            let mut trips_counted_to = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(t) = me.upgrade() else { return };
                t.sample(&mut previous, &mut last_cpu, &mut trips_counted_to);
            }
        });
    }
}

/// The label value for a method, or a route, that is not one we know:
/// OpenTelemetry's HTTP conventions name it `_OTHER`.
pub const OTHER: &str = "_OTHER";

/// The methods that become label values as they are (RFC 9110's, and
/// PATCH); anything else a client invents is [`OTHER`]. Without this, every
/// made-up method (no sign-in needed) would add new series to `/metrics`
/// and new histograms to the live window, and nothing would drop them.
///
/// With it, series are bounded: `http_server_request_duration_seconds` has
/// at most 10 methods × (route templates + [`OTHER`]) × the status codes
/// the app answers with, and `http_server_active_requests` 10 series.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => OTHER,
    }
}

/// Middleware: counts active requests and records each one's duration by
/// method (standard ones only, see [`method_label`]), route template (never
/// the raw path; [`OTHER`] for a path that matched no route) and status.
pub async fn record_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(t) = req.app_data::<web::Data<Arc<Telemetry>>>().cloned() else {
        return next.call(req).await;
    };
    let method = method_label(req.method()).to_owned();
    t.active.fetch_add(1, Ordering::Relaxed);
    let active =
        metrics::gauge!("http_server_active_requests", "http_request_method" => method.clone());
    active.increment(1.0);
    let started = Instant::now();
    let res = next.call(req).await;
    let took = started.elapsed();
    t.active.fetch_sub(1, Ordering::Relaxed);
    active.decrement(1.0);
    let (route, status) = match &res {
        Ok(r) => (
            r.request().match_pattern().unwrap_or_else(|| OTHER.into()),
            r.status(),
        ),
        Err(e) => (OTHER.into(), e.as_response_error().status_code()),
    };
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "http_request_method" => method.clone(),
        "http_route" => route.clone(),
        "http_response_status_code" => status.as_u16().to_string()
    )
    .record(took.as_secs_f64());
    // Round trips to the servers behind the app (stage 2): summed per
    // route in the live window; the sampler adds each finished second's
    // to the Prometheus counter, off the request's path.
    let trips = res
        .as_ref()
        .ok()
        .and_then(|r| r.response().extensions().get::<RoundTrips>().copied())
        .unwrap_or_default();
    t.record(&method, &route, status, took, trips);
    res
}
