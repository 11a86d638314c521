//! Stage 2's saturation figures: the counters its components keep (pool
//! trouble, cache effectiveness, the photo queue) and the figures the
//! metrics read from them every second, with their Prometheus names.

use minigram::figure_keys as keys;
use minigram::telemetry::Figure;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::postgres::Postgres;
use super::redis_pool::RedisPool;

/// Counters the lab reads: cache effectiveness and pool trouble.
#[derive(Debug, Default)]
pub struct Stage2Stats {
    /// Feed reads answered from the cache (a cached first page or id list).
    pub cache_hits: AtomicU64,
    /// Of those, first pages served whole from the cache.
    pub page_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Feed reads that skipped the cache because Redis failed (or the
    /// stampede guard sent them to Postgres).
    pub cache_bypasses: AtomicU64,
    /// Readers that waited for another reader's rebuild and got its result.
    pub stampede_waits: AtomicU64,
    pub pg_timeouts: AtomicU64,
    /// Postgres calls refused at once because the pool's queue was full.
    pub pg_shed: AtomicU64,
    /// Redis calls refused at once because the pool's queue was full.
    pub redis_shed: AtomicU64,
    pub redis_timeouts: AtomicU64,
    /// Postgres calls in progress (holding or waiting for a connection).
    pub pg_in_flight: AtomicI64,
    /// Redis calls in progress (holding or waiting for a connection).
    pub redis_in_flight: AtomicI64,
    /// Photo queue (queue mode): jobs waiting, as last seen by a worker.
    pub photo_queue_depth: AtomicI64,
    /// Photos the workers made ready (or found failed).
    pub photos_processed: AtomicU64,
    /// Upload-to-ready time of the last photo processed, in milliseconds.
    pub photo_lag_ms: AtomicU64,
}

/// Every figure of a stage-2 process, read every second by the metrics.
pub fn figures(db: &Postgres, redis: &RedisPool, st: &Stage2Stats) -> Vec<Figure> {
    let pg_size = db.pool().size() as f64;
    // The idle count can wrap below zero (two reference results recorded
    // 1.8e19 idle connections, 2^64 less a few): a count above the pool's
    // size is such a wrap, and there is no idle connection then.
    let pg_idle = match db.pool().num_idle() as f64 {
        idle if idle > pg_size => 0.0,
        idle => idle,
    };
    let pg_used = (pg_size - pg_idle).max(0.0);
    let pg_waiting = (st.pg_in_flight.load(Ordering::Relaxed) as f64 - pg_used).max(0.0);
    let redis = redis.pool().state();
    let redis_used = redis.connections.saturating_sub(redis.idle_connections) as f64;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    vec![
        Figure::gauge(
            keys::POSTGRES_USED,
            "Postgres connections in use",
            "db_client_connection_count",
            pg_used,
        )
        .labels(&[("pool", "postgres"), ("state", "used")]),
        Figure::gauge(
            keys::POSTGRES_IDLE,
            "Postgres connections idle",
            "db_client_connection_count",
            pg_idle,
        )
        .labels(&[("pool", "postgres"), ("state", "idle")]),
        Figure::gauge(
            keys::POSTGRES_WAITING,
            "Postgres pool waiters",
            "db_client_connection_pending_requests",
            pg_waiting,
        )
        .labels(&[("pool", "postgres")]),
        Figure::counter(
            keys::POSTGRES_TIMEOUTS,
            "Postgres pool timeouts (503)",
            "db_client_connection_timeouts_total",
            load(&st.pg_timeouts),
        )
        .labels(&[("pool", "postgres")]),
        Figure::counter(
            keys::POSTGRES_SHED,
            "Postgres calls refused at once: the pool's queue was full (503)",
            "db_client_connection_shed_total",
            load(&st.pg_shed),
        )
        .labels(&[("pool", "postgres")]),
        Figure::gauge(
            keys::REDIS_USED,
            "Redis connections in use",
            "db_client_connection_count",
            redis_used,
        )
        .labels(&[("pool", "redis"), ("state", "used")]),
        Figure::gauge(
            keys::REDIS_WAITING,
            "Redis pool waiters",
            "db_client_connection_pending_requests",
            redis.statistics.pending_gets() as f64,
        )
        .labels(&[("pool", "redis")]),
        Figure::counter(
            keys::REDIS_TIMEOUTS,
            "Redis pool timeouts (503)",
            "db_client_connection_timeouts_total",
            load(&st.redis_timeouts),
        )
        .labels(&[("pool", "redis")]),
        Figure::counter(
            keys::REDIS_SHED,
            "Redis calls refused at once: the pool's queue was full (503)",
            "db_client_connection_shed_total",
            load(&st.redis_shed),
        )
        .labels(&[("pool", "redis")]),
        Figure::counter(
            keys::CACHE_HITS,
            "Feed cache hits",
            "minigram_feed_cache_requests_total",
            load(&st.cache_hits),
        )
        .labels(&[("result", "hit")]),
        Figure::counter(
            keys::CACHE_MISSES,
            "Feed cache misses (rebuilt from Postgres)",
            "minigram_feed_cache_requests_total",
            load(&st.cache_misses),
        )
        .labels(&[("result", "miss")]),
        Figure::counter(
            keys::CACHE_BYPASSES,
            "Feed cache bypassed (Redis failing or busy)",
            "minigram_feed_cache_requests_total",
            load(&st.cache_bypasses),
        )
        .labels(&[("result", "bypass")]),
        Figure::gauge(
            keys::PHOTOS_QUEUED,
            "Photos waiting for the background worker",
            "minigram_photo_queue_depth",
            st.photo_queue_depth.load(Ordering::Relaxed) as f64,
        ),
        Figure::counter(
            keys::PHOTOS_PROCESSED,
            "Photos processed by the background worker",
            "minigram_photos_processed_total",
            load(&st.photos_processed),
        ),
        Figure::gauge(
            keys::PHOTOS_LAG_MS,
            "Upload to visible, last queued photo (ms)",
            "minigram_photo_visible_lag_milliseconds",
            load(&st.photo_lag_ms),
        ),
    ]
}
