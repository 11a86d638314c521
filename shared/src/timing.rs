//! Per-request time attribution, sent as a `Server-Timing` header.
//!
//! A middleware opens a task-local scope around each request; storage and
//! hashing code call [`record`] after each step. The header then reads e.g.
//! `db;dur=0.41, hash;dur=38.2, app;dur=39.0`; entries are `db`, `hash`,
//! `cache`, `img` and `app` (the whole request) (milliseconds), which browser
//! devtools show and the load tests use to attribute latency.
//!
//! Stage 2 also counts the request's **round trips** to each server it
//! talks to over the network ([`round_trips`]): `pg-trips;desc=2,
//! redis-trips;desc=1` (absent: none), and the metrics add them up per
//! route (`minigram_round_trips_total`). A round trip is one request
//! written and its answer awaited: a Redis command, pipeline or script is
//! one; a Postgres statement is one, and so is the liveness check sqlx
//! makes when it hands out a pooled connection. On a fast network they
//! cost little; on a real one each costs the link's RTT, which is what the
//! network-latency experiment measures.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use std::cell::Cell;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// Time in storage calls (including waiting for a connection or lock).
    Db,
    /// Time hashing or verifying passwords (including queueing for a slot).
    Hash,
    /// Time in a cache (stage 2).
    Cache,
    /// Time decoding, resizing and re-encoding an uploaded image.
    Image,
}

/// A server a request reaches over the network (stage 2).
#[derive(Debug, Clone, Copy)]
pub enum Remote {
    Postgres,
    Redis,
}

/// The round trips one request made, by server: in Server-Timing, and in
/// the response's extensions for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundTrips {
    pub postgres: u32,
    pub redis: u32,
}

#[derive(Default)]
struct Timings {
    db: Cell<Duration>,
    hash: Cell<Duration>,
    cache: Cell<Duration>,
    image: Cell<Duration>,
    trips: Cell<RoundTrips>,
}

tokio::task_local! {
    static TIMINGS: Timings;
}

/// Adds `took` to the current request's `phase`; a no-op outside a request.
pub fn record(phase: Phase, took: Duration) {
    let _ = TIMINGS.try_with(|t| {
        let cell = match phase {
            Phase::Db => &t.db,
            Phase::Hash => &t.hash,
            Phase::Cache => &t.cache,
            Phase::Image => &t.image,
        };
        cell.set(cell.get() + took);
    });
}

/// Adds `n` round trips to `remote` to the current request; a no-op
/// outside a request.
pub fn round_trips(remote: Remote, n: u32) {
    let _ = TIMINGS.try_with(|t| {
        let mut trips = t.trips.get();
        match remote {
            Remote::Postgres => trips.postgres += n,
            Remote::Redis => trips.redis += n,
        }
        t.trips.set(trips);
    });
}

/// Middleware: measures the request and writes the `Server-Timing` header.
pub async fn server_timing(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let (mut res, header) = TIMINGS
        .scope(Timings::default(), async move {
            let res = next.call(req).await;
            let header = TIMINGS.with(|t| (render(t, started.elapsed()), t.trips.get()));
            (res, header)
        })
        .await;
    let (header, trips) = header;
    if let Ok(res) = res.as_mut() {
        if let Ok(value) = HeaderValue::from_str(&header) {
            res.headers_mut()
                .insert(HeaderName::from_static("server-timing"), value);
        }
        res.response_mut().extensions_mut().insert(trips);
    }
    res
}

fn render(t: &Timings, total: Duration) -> String {
    let mut parts = Vec::with_capacity(4);
    let phases = [
        ("db", t.db.get()),
        ("hash", t.hash.get()),
        ("cache", t.cache.get()),
        ("img", t.image.get()),
    ];
    for (name, d) in phases {
        if !d.is_zero() {
            parts.push(format!("{name};dur={:.3}", d.as_secs_f64() * 1e3));
        }
    }
    parts.push(format!("app;dur={:.3}", total.as_secs_f64() * 1e3));
    let trips = t.trips.get();
    for (name, n) in [("pg-trips", trips.postgres), ("redis-trips", trips.redis)] {
        if n > 0 {
            parts.push(format!("{name};desc={n}"));
        }
    }
    parts.join(", ")
}

/// Reads a round-trip count (`pg-trips`, `redis-trips`) of a
/// `Server-Timing` header; absent is none.
pub fn parse_trips(header: &str, name: &str) -> u32 {
    header
        .split(',')
        .find_map(|part| {
            let mut fields = part.trim().split(';');
            if fields.next()? != name {
                return None;
            }
            fields.find_map(|f| f.trim().strip_prefix("desc=")?.parse().ok())
        })
        .unwrap_or(0)
}

/// Reads one entry (`app`, `db`, ...) of a `Server-Timing` header, in ms.
pub fn parse_entry(header: &str, name: &str) -> Option<f64> {
    header.split(',').find_map(|part| {
        let mut fields = part.trim().split(';');
        if fields.next()? != name {
            return None;
        }
        fields.find_map(|f| f.trim().strip_prefix("dur=")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses() {
        let t = Timings::default();
        t.db.set(Duration::from_micros(1500));
        let h = render(&t, Duration::from_millis(3));
        assert_eq!(h, "db;dur=1.500, app;dur=3.000");
        assert_eq!(parse_entry(&h, "db"), Some(1.5));
        assert_eq!(parse_entry(&h, "app"), Some(3.0));
        assert_eq!(parse_entry(&h, "hash"), None);
        assert_eq!(parse_trips(&h, "pg-trips"), 0);
        t.trips.set(RoundTrips {
            postgres: 2,
            redis: 1,
        });
        let h = render(&t, Duration::from_millis(3));
        assert_eq!(
            h,
            "db;dur=1.500, app;dur=3.000, pg-trips;desc=2, redis-trips;desc=1"
        );
        assert_eq!(parse_trips(&h, "pg-trips"), 2);
        assert_eq!(parse_trips(&h, "redis-trips"), 1);
        assert_eq!(parse_entry(&h, "app"), Some(3.0));
    }
}
