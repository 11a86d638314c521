//! What a stage-2 process is told about its storage: where Postgres and
//! the two Redis roles are, how big each pool is, and which of the
//! optional components (the feed cache, the photo queue, read replicas,
//! timelines) are switched on.

use std::time::Duration;

use super::timelines::FeedStrategy;

#[derive(Debug, Clone)]
pub struct Stage2Config {
    pub database_url: String,
    /// Redis for state that must not be evicted: sessions, sign-in
    /// throttle counters, the photo queue. Run it with `noeviction`.
    pub redis_url: String,
    /// Redis for the feed cache, if not the same server: the cache can
    /// then run under memory pressure with `allkeys-lru` without ever
    /// evicting a session or a throttle counter (docker-compose.yml does).
    pub cache_redis_url: Option<String>,
    /// Every Redis key starts with `<prefix>:`, so several labs (or tests)
    /// can share one Redis.
    pub redis_prefix: String,
    pub pg_pool_size: u32,
    pub redis_pool_size: u32,
    /// How long a request waits for a pooled connection before a 503.
    pub acquire_timeout: Duration,
    /// Calls that may wait for a connection of each pool at once; one more
    /// is refused at once (503) instead of waiting out the timeout.
    pub pool_queue_max: u32,
    /// A pooled Postgres connection idle for longer than this is pinged
    /// before use (one round trip); one used more recently is not, since
    /// sqlx pings every connection as it returns to the pool anyway.
    pub pg_ping_idle_after: Duration,
    pub feed_cache: bool,
    /// How long a cached feed id list lives (plus up to 10 s of jitter).
    pub feed_cache_ttl: Duration,
    /// How long a cached first page lives: the longest that others' likes
    /// can take to show in a viewer's first feed page.
    pub feed_page_ttl: Duration,
    /// Hand uploads to background workers through a Redis queue instead of
    /// processing them in the request (`--photo-processing queue`).
    pub photo_queue: bool,
    /// Worker tasks per process (queue mode).
    pub photo_workers: usize,
    /// Queued photos at most; past it an upload is refused with 503.
    pub photo_queue_max: u64,
    /// Postgres read replicas (`--read-replica`, streaming standbys of
    /// `database_url`): explore, profiles, photos and the uncached feed
    /// are read there; none means every read goes to the primary.
    pub read_replicas: Vec<String>,
    /// How often each replica's replayed position and lag are read.
    pub replica_poll: Duration,
    /// A replica further behind than this is not read at all: the most
    /// that others' writes can be late on a read (your own never are).
    pub replica_max_lag: Duration,
    /// How a feed page is made: a query at read time (pull) or
    /// precomputed timelines (push, hybrid).
    pub feed_strategy: FeedStrategy,
    /// Hybrid: accounts with more followers than this are not fanned out.
    pub celebrity_followers: usize,
    /// Photo ids a timeline keeps (the newest).
    pub timeline_cap: usize,
    /// A timeline's life from when it was built.
    pub timeline_ttl: Duration,
    /// Fan-out worker tasks per process (push, hybrid).
    pub fanout_workers: usize,
    /// An announcement delivered to a worker and not acknowledged for this
    /// long is taken over by another worker (the first one died).
    pub fanout_claim_after: Duration,
}

impl Stage2Config {
    /// The default of [`Stage2Config::pg_ping_idle_after`]: under load a
    /// connection returns within milliseconds and is not pinged; after a
    /// quiet second (when a restarted Postgres may have dropped it) it is.
    pub const PING_IDLE_AFTER: Duration = Duration::from_secs(1);
    /// The default of [`Stage2Config::replica_poll`].
    pub const REPLICA_POLL: Duration = Duration::from_millis(100);
    /// The default of [`Stage2Config::replica_max_lag`].
    pub const REPLICA_MAX_LAG: Duration = Duration::from_secs(10);

    pub fn new(database_url: impl Into<String>, redis_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            cache_redis_url: None,
            redis_prefix: "minigram".into(),
            pg_pool_size: 10,
            redis_pool_size: 16,
            acquire_timeout: Duration::from_secs(2),
            pool_queue_max: 64,
            pg_ping_idle_after: Self::PING_IDLE_AFTER,
            feed_cache: true,
            feed_cache_ttl: Duration::from_secs(60),
            feed_page_ttl: Duration::from_secs(10),
            photo_queue: false,
            photo_workers: 1,
            photo_queue_max: 1000,
            read_replicas: Vec::new(),
            replica_poll: Self::REPLICA_POLL,
            replica_max_lag: Self::REPLICA_MAX_LAG,
            feed_strategy: FeedStrategy::Pull,
            celebrity_followers: 1000,
            timeline_cap: 500,
            timeline_ttl: Duration::from_secs(600),
            fanout_workers: 1,
            fanout_claim_after: Duration::from_secs(30),
        }
    }
}
