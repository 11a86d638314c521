//! The `Store` on Postgres (a bounded sqlx pool) and Redis (a bounded bb8
//! pool): what changes when Minigram scales out.
//!
//! - **Sessions live in Redis**, with an expiry, so any stage-2 process can
//!   serve any user and a logout on one process is seen by all. Each user
//!   keeps at most `auth::MAX_SESSIONS_PER_USER` (an index per user).
//! - **Two Redis roles.** Sessions, sign-in throttle counters and the photo
//!   queue are state: evicting them would sign people out or forget
//!   failed guesses, so their server runs with `noeviction`. The feed cache
//!   may be evicted at any time; given `--cache-redis-url` it lives on its
//!   own server, which can run `allkeys-lru` under memory pressure
//!   (docker-compose.yml does). One server for both is fine while memory
//!   is not short.
//! - **Feeds are cached in Redis (cache-aside)** as the list of the newest
//!   [`FEED_WINDOW`] photo ids of each viewer's feed. A page is then
//!   "hydrated" from Postgres by primary key, so like counts and "liked by
//!   me" are always fresh; only *which* photos are in a feed is cached.
//! - **Invalidation** happens in the request that made the change, after its
//!   commit and before its answer: a new photo invalidates the cached feeds
//!   of its owner and every follower; a follow or unfollow invalidates the
//!   follower's. So the user who made a change sees it on their very next
//!   read, and followers see a new photo on their next read. A like drops
//!   the liker's cached feed (its first page carries "liked by me"). Each
//!   invalidation is one atomic step (MULTI/EXEC).
//! - **Races.** A reader that missed the cache records the viewer's feed
//!   generation before querying Postgres, and stores its result only if the
//!   generation is unchanged (one Lua script): an invalidation that lands
//!   while the reader is querying is never overwritten by stale data.
//! - **Staleness others may see:** none in normal operation. If Redis is
//!   unreachable at the moment a change is invalidated (the change itself is
//!   committed), feeds cached before may show the old list until their TTL
//!   ([`Stage2Config::feed_cache_ttl`], 60 s by default, plus up to 10 s of
//!   jitter) runs out.
//! - **Stampedes:** when a feed key is missing, one reader per viewer takes a
//!   short Redis lock and rebuilds it; the others wait up to ~100 ms for its
//!   result and then read Postgres directly rather than pile up. TTLs get
//!   random jitter so keys made together do not expire together.
//! - **Overload and faults:** both pools are bounded with short acquire
//!   timeouts, and at most `pool_queue_max` calls wait for a connection
//!   of each (one more is refused at once); a refusal, a timeout or a
//!   lost connection is a 503 with Retry-After, never a hang. When Redis is down, sessions cannot be checked (503
//!   `sessions_unavailable`), and feed reads that got past that bypass the
//!   cache (counted). Pools reconnect by themselves when a server returns.

use anyhow::Context;
use bb8_redis::RedisConnectionManager;
use minigram::auth::{AttemptLimit, Reservation};
use minigram::domain::{Email, PageLimit, PageQuery, PhotoId, UserId, Username};
use minigram::store::{
    Credentials, Dataset, FollowState, ImportSummary, Integrity, LikeState, MyProfile, NewPhoto,
    NewSession, NewUser, Photo, PhotoPage, PhotoStatus, SessionUser, Store, StoreError,
    StoreResult, UserProfile,
};
use minigram::telemetry::Figure;
use minigram::timing::{self, Phase};
use rand::Rng;
use redis::aio::MultiplexedConnection;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Postgres};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many of a viewer's newest feed photo ids the cache keeps. Pages
/// beyond it are read from Postgres.
pub const FEED_WINDOW: usize = 200;

/// The most random time added to a cached feed's TTL (so keys made
/// together do not expire together).
pub const TTL_JITTER: Duration = Duration::from_secs(10);

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
}

impl Stage2Config {
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
            feed_cache: true,
            feed_cache_ttl: Duration::from_secs(60),
            feed_page_ttl: Duration::from_secs(10),
            photo_queue: false,
            photo_workers: 1,
            photo_queue_max: 1000,
        }
    }
}

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

/// A Redis call refused because the pool's queue was full: the caller
/// answers 503 `overloaded` (sessions) or reads Postgres (the feed cache).
#[derive(Debug)]
struct QueueFull;

impl std::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the Redis pool's queue is full")
    }
}

impl std::error::Error for QueueFull {}

/// Counts a call to a pool as in flight while it lives.
struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    /// Joins the calls in flight, or `None` (and leaves at once) when
    /// `limit` calls are already holding or waiting for a connection.
    fn join(counter: &'a AtomicI64, limit: i64) -> Option<Self> {
        let this = Self(counter);
        (counter.fetch_add(1, Ordering::Relaxed) < limit).then_some(this)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct Stage2Store {
    inner: Arc<Inner>,
}

struct Inner {
    pg: PgPool,
    /// Sessions, throttle counters, the photo queue.
    redis: bb8::Pool<RedisManager>,
    /// The feed cache: the same pool as `redis` unless `cache_redis_url`
    /// names another server.
    cache: bb8::Pool<RedisManager>,
    config: Stage2Config,
    stats: Stage2Stats,
    set_if_generation: redis::Script,
    set_page_if_generation: redis::Script,
}

/// bb8-redis's manager, with one change: a connection whose command failed
/// at the connection level is marked broken and dropped by the pool, so the
/// pool need not PING on every checkout (which doubled Redis round trips).
pub struct RedisManager(RedisConnectionManager);

pub struct RedisConn {
    pub conn: MultiplexedConnection,
    broken: bool,
}

impl bb8::ManageConnection for RedisManager {
    type Connection = RedisConn;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<RedisConn, redis::RedisError> {
        Ok(RedisConn {
            conn: self.0.connect().await?,
            broken: false,
        })
    }

    async fn is_valid(&self, conn: &mut RedisConn) -> Result<(), redis::RedisError> {
        self.0.is_valid(&mut conn.conn).await
    }

    fn has_broken(&self, conn: &mut RedisConn) -> bool {
        conn.broken
    }
}

fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Where a URL points, without its password, for error messages.
fn server_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    host.split(['/', '?']).next().unwrap_or(host).to_owned()
}

/// A bounded pool of connections to the Redis at `url`, after one direct
/// connection that fails with a precise message if Redis is not there
/// (`flag` names the setting that points to it).
async fn connect_redis(
    config: &Stage2Config,
    url: &str,
    flag: &str,
) -> anyhow::Result<bb8::Pool<RedisManager>> {
    let redis_server = server_of(url);
    let unreachable = |why: String| {
        anyhow::anyhow!(
            "cannot reach Redis at {redis_server} ({flag}): {why}; \
             start it (e.g. `docker compose up -d redis`) or point to another server"
        )
    };
    let client = redis::Client::open(url).with_context(|| format!("bad Redis URL {url}"))?;
    let mut probe = tokio::time::timeout(
        config.acquire_timeout,
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| unreachable("timed out".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let _: String = redis::cmd("PING")
        .query_async(&mut probe)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let manager =
        RedisConnectionManager::new(url).with_context(|| format!("bad Redis URL {url}"))?;
    Ok(bb8::Pool::builder()
        .max_size(config.redis_pool_size.max(1))
        .connection_timeout(config.acquire_timeout)
        // While Redis is down, fail at once (503) instead of retrying
        // the connection for the whole acquire timeout.
        .retry_connection(false)
        // Broken connections are detected by their failed command
        // instead (see `RedisManager`).
        .test_on_check_out(false)
        .build_unchecked(RedisManager(manager)))
}

impl Stage2Store {
    /// Connects to Postgres (creating the database if missing, running
    /// migrations) and to Redis. Fails with a message naming the server
    /// that could not be reached.
    pub async fn connect(config: Stage2Config) -> anyhow::Result<Self> {
        let pg_server = server_of(&config.database_url);
        let exists = Postgres::database_exists(&config.database_url)
            .await
            .with_context(|| {
                format!(
                    "cannot reach Postgres at {pg_server} (--database-url / DATABASE_URL): \
                     start it (e.g. `docker compose up -d postgres`) or point to another server"
                )
            })?;
        if !exists {
            Postgres::create_database(&config.database_url)
                .await
                .with_context(|| {
                    format!("cannot create the database of {}", config.database_url)
                })?;
        }
        let pg = PgPoolOptions::new()
            .max_connections(config.pg_pool_size.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect(&config.database_url)
            .await
            .with_context(|| format!("cannot connect to Postgres at {pg_server}"))?;
        sqlx::migrate!("./migrations")
            .run(&pg)
            .await
            .context("running the Postgres migrations")?;

        let redis = connect_redis(&config, &config.redis_url, "--redis-url / REDIS_URL").await?;
        let cache = match &config.cache_redis_url {
            Some(url) if *url != config.redis_url => {
                connect_redis(&config, url, "--cache-redis-url / CACHE_REDIS_URL").await?
            }
            _ => redis.clone(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                pg,
                redis,
                cache,
                config,
                stats: Stage2Stats::default(),
                set_if_generation: redis::Script::new(SET_IF_GENERATION),
                set_page_if_generation: redis::Script::new(SET_PAGE_IF_GENERATION),
            }),
        })
    }

    pub fn config(&self) -> &Stage2Config {
        &self.inner.config
    }

    pub fn stats(&self) -> &Stage2Stats {
        &self.inner.stats
    }

    pub fn pg(&self) -> &PgPool {
        &self.inner.pg
    }

    pub fn redis_pool(&self) -> &bb8::Pool<RedisManager> {
        &self.inner.redis
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}:{kind}:{id}", self.inner.config.redis_prefix)
    }

    /// Runs a Postgres step, counted in flight (for the pool-waiter figure)
    /// and timed (for Server-Timing). Callers that must read a database
    /// error themselves (unique or foreign-key violations) use this.
    async fn timed<T>(
        &self,
        step: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> StoreResult<Result<T, sqlx::Error>> {
        // A bounded queue in front of the pool: under overload, waiting up
        // to the acquire timeout only to fail makes every answer slow, so a
        // call that would find the queue full is refused at once (a fast
        // 503, as the admission limit and the hash queue do).
        let stats = &self.inner.stats;
        let limit = i64::from(self.inner.config.pg_pool_size.max(1))
            + i64::from(self.inner.config.pool_queue_max);
        let Some(_in_flight) = InFlight::join(&stats.pg_in_flight, limit) else {
            stats.pg_shed.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Overloaded);
        };
        let started = Instant::now();
        let result = step.await;
        timing::record(Phase::Db, started.elapsed());
        if matches!(result, Err(sqlx::Error::PoolTimedOut)) {
            stats.pg_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(result)
    }

    /// A timed Postgres step whose error is classified (503 or 500).
    async fn db<T>(
        &self,
        doing: &'static str,
        step: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> StoreResult<T> {
        self.timed(step).await?.map_err(|e| self.pg_error(e, doing))
    }

    fn pg_error(&self, e: sqlx::Error, doing: &'static str) -> StoreError {
        let unavailable = match &e {
            sqlx::Error::PoolTimedOut => true,
            sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
            sqlx::Error::Protocol(_) => true,
            // 08: connection exception; 57P0x: shutting down / starting up;
            // 53300: too many connections.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
            _ => false,
        };
        let e = anyhow::Error::new(e).context(doing);
        if unavailable {
            StoreError::Unavailable(e)
        } else {
            StoreError::Unexpected(e)
        }
    }

    /// Runs Redis work on a connection of `pool`, timing it; a
    /// connection-level failure retires the connection.
    async fn on_redis<T>(
        &self,
        pool: &bb8::Pool<RedisManager>,
        work: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> anyhow::Result<T> {
        // The same bounded queue as Postgres's (see `timed`), counted over
        // both Redis pools when the cache has its own server.
        let stats = &self.inner.stats;
        let limit = i64::from(self.inner.config.redis_pool_size.max(1))
            + i64::from(self.inner.config.pool_queue_max);
        let Some(_in_flight) = InFlight::join(&stats.redis_in_flight, limit) else {
            stats.redis_shed.fetch_add(1, Ordering::Relaxed);
            return Err(anyhow::Error::new(QueueFull));
        };
        let started = Instant::now();
        let result = async {
            let mut pooled = pool.get().await.map_err(|e| {
                if matches!(e, bb8::RunError::TimedOut) {
                    self.inner
                        .stats
                        .redis_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                }
                anyhow::anyhow!("redis pool: {e}")
            })?;
            let result = work(&mut pooled.conn).await;
            if let Err(e) = &result
                && is_connection_error(e)
            {
                pooled.broken = true;
            }
            Ok(result?)
        }
        .await;
        timing::record(Phase::Cache, started.elapsed());
        result
    }

    /// One command on the state Redis (sessions, throttle, photo queue).
    async fn redis<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> anyhow::Result<T> {
        self.on_redis(&self.inner.redis, async |c| cmd.query_async::<T>(c).await)
            .await
    }

    pub(crate) async fn redis_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> anyhow::Result<T> {
        self.on_redis(&self.inner.redis, async |c| pipe.query_async::<T>(c).await)
            .await
    }

    /// One command on the feed cache's Redis.
    async fn cache<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> anyhow::Result<T> {
        self.on_redis(&self.inner.cache, async |c| cmd.query_async::<T>(c).await)
            .await
    }

    async fn cache_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> anyhow::Result<T> {
        self.on_redis(&self.inner.cache, async |c| pipe.query_async::<T>(c).await)
            .await
    }

    /// A photo of `owner` became visible: drop the cached feeds of the
    /// owner and of every follower. An error means some may be stale (the
    /// photo is committed either way): the queue worker retries.
    pub(crate) async fn invalidate_for_new_photo(&self, owner: UserId) -> StoreResult<()> {
        let mut viewers = self
            .db(
                "reading followers",
                sqlx::query_scalar::<_, i64>(
                    "SELECT follower_id FROM follows WHERE followee_id = $1",
                )
                .bind(owner.0)
                .fetch_all(&self.inner.pg),
            )
            .await?;
        viewers.push(owner.0);
        self.invalidate_feeds(&viewers)
            .await
            .map_err(StoreError::Unavailable)
    }

    /// (owner, file name, upload time) of a photo that is still processing.
    pub(crate) async fn processing_photo(
        &self,
        id: PhotoId,
    ) -> StoreResult<Option<(i64, String, i64)>> {
        self.db(
            "reading a queued photo",
            sqlx::query_as::<_, (i64, String, i64)>(
                "SELECT user_id, file_name, created_at FROM photos
                 WHERE id = $1 AND status = 'processing'",
            )
            .bind(id.0)
            .fetch_optional(&self.inner.pg),
        )
        .await
    }

    /// Records the worker's outcome; false if another worker already did.
    pub(crate) async fn finish_photo(
        &self,
        id: PhotoId,
        status: PhotoStatus,
        width: u32,
        height: u32,
    ) -> StoreResult<bool> {
        let done = self
            .db(
                "finishing a queued photo",
                sqlx::query(
                    "UPDATE photos SET status = $2, width = $3, height = $4
                     WHERE id = $1 AND status = 'processing'",
                )
                .bind(id.0)
                .bind(status.as_str())
                .bind(width as i32)
                .bind(height as i32)
                .execute(&self.inner.pg),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Photos still processing `age` after their upload (at most 1000).
    pub(crate) async fn stale_processing(&self, age: Duration) -> StoreResult<Vec<PhotoId>> {
        let ids = self
            .db(
                "finding lost photo jobs",
                sqlx::query_scalar::<_, i64>(
                    "SELECT id FROM photos WHERE status = 'processing' AND created_at < $1
                     ORDER BY id LIMIT 1000",
                )
                .bind(now_ms() - age.as_millis() as i64)
                .fetch_all(&self.inner.pg),
            )
            .await?;
        Ok(ids.into_iter().map(PhotoId).collect())
    }

    /// The Redis list of queued photo ids (LPUSH in, RPOP out: FIFO).
    pub(crate) fn photo_queue_key(&self) -> String {
        format!("{}:photoq", self.inner.config.redis_prefix)
    }

    /// Drops the cached feeds of `viewers`, as one atomic step (MULTI/EXEC):
    /// a reader never sees a viewer's new generation beside the old id
    /// list, so it cannot store a page built from that list under the new
    /// generation. A failure is logged and counted, and returned: the
    /// change itself is committed; see the module docs for the staleness
    /// this allows.
    async fn invalidate_feeds(&self, viewers: &[i64]) -> anyhow::Result<()> {
        if !self.inner.config.feed_cache || viewers.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for v in viewers {
            let generation = self.key("feedgen", v);
            pipe.cmd("INCR").arg(&generation).ignore();
            pipe.cmd("EXPIRE").arg(&generation).arg(86_400).ignore();
            pipe.cmd("DEL")
                .arg(self.key("feed", v))
                .arg(self.key("feedpage", v))
                .ignore();
        }
        if let Err(e) = self.cache_pipe::<()>(&pipe).await {
            self.inner
                .stats
                .cache_bypasses
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, viewers = viewers.len(), "feed cache invalidation failed");
            return Err(e);
        }
        Ok(())
    }

    /// The viewer's cached first page for `limit`: one command, the hot path.
    async fn read_first_page(&self, viewer: UserId, limit: u32) -> anyhow::Result<Option<String>> {
        let cmd = redis::cmd("HGET")
            .arg(self.key("feedpage", viewer.0))
            .arg(limit)
            .clone();
        self.cache(&cmd).await
    }

    /// The viewer's feed generation and cached id list, in one round trip.
    async fn read_feed_ids(&self, viewer: UserId) -> anyhow::Result<CacheRead> {
        let cmd = redis::cmd("MGET")
            .arg(self.key("feedgen", viewer.0))
            .arg(self.key("feed", viewer.0))
            .clone();
        let (generation, ids): (Option<String>, Option<String>) = self.cache(&cmd).await?;
        Ok(CacheRead { generation, ids })
    }

    /// Rebuilds the viewer's id list after a miss, one reader at a time.
    /// `None`: another reader is rebuilding and did not finish in time (or
    /// Redis failed): read Postgres directly.
    async fn rebuild_feed_ids(
        &self,
        viewer: UserId,
        generation: &Option<String>,
    ) -> StoreResult<Option<Vec<i64>>> {
        let stats = &self.inner.stats;
        let (feed_key, gen_key) = (self.key("feed", viewer.0), self.key("feedgen", viewer.0));
        let lock_key = self.key("feedlock", viewer.0);
        let lock = redis::cmd("SET")
            .arg(&lock_key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(3000)
            .clone();
        let got_lock: Option<String> = self.cache(&lock).await.unwrap_or(None);
        if got_lock.is_none() {
            // Someone else is rebuilding this feed: wait briefly for it.
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let get = redis::cmd("GET").arg(&feed_key).clone();
                if let Ok(Some(ids)) = self.cache::<Option<String>>(&get).await {
                    stats.stampede_waits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(parse_ids(&ids)));
                }
            }
            stats.cache_bypasses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let ids = self.feed_ids_from_db(viewer).await?;
        let ttl = self.inner.config.feed_cache_ttl.as_secs().max(1)
            + rand::rng().random_range(0..=TTL_JITTER.as_secs());
        let joined = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let mut script = self.inner.set_if_generation.prepare_invoke();
        script
            .key(&feed_key)
            .key(&gen_key)
            .key(&lock_key)
            .arg(generation.clone().unwrap_or_default())
            .arg(joined)
            .arg(ttl);
        if let Err(e) = self.cache_script(&script).await {
            tracing::debug!(error = %e, "could not store a feed in the cache");
        }
        Ok(Some(ids))
    }

    /// Caches a hydrated first page, unless the feed was invalidated since
    /// `generation` was read.
    async fn store_first_page(
        &self,
        viewer: UserId,
        limit: u32,
        generation: &Option<String>,
        page: &PhotoPage,
    ) {
        let Ok(json) = serde_json::to_string(page) else {
            return;
        };
        let mut script = self.inner.set_page_if_generation.prepare_invoke();
        script
            .key(self.key("feedpage", viewer.0))
            .key(self.key("feedgen", viewer.0))
            .arg(generation.clone().unwrap_or_default())
            .arg(limit)
            .arg(json)
            .arg(self.inner.config.feed_page_ttl.as_millis().max(1) as u64);
        if let Err(e) = self.cache_script(&script).await {
            tracing::debug!(error = %e, "could not store a feed page in the cache");
        }
    }

    async fn cache_script(&self, script: &redis::ScriptInvocation<'_>) -> anyhow::Result<i64> {
        self.on_redis(&self.inner.cache, async |c| {
            script.invoke_async::<i64>(c).await
        })
        .await
    }

    /// The feed through the cache: the first page as cached (hot path), or
    /// the cached id list hydrated from Postgres.
    async fn feed_cached(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        let stats = &self.inner.stats;
        // Only the page size clients get by default is kept as a rendered
        // page: a client choosing `limit` 1..=100 must not make up to a
        // hundred cached pages per viewer. Other sizes come from the id list.
        let first = page.before.is_none() && page.limit.get() == PageLimit::DEFAULT;
        let bypass = |e: anyhow::Error| {
            stats.cache_bypasses.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "feed cache unavailable, reading Postgres");
        };
        if first {
            match self.read_first_page(viewer, page.limit.get()).await {
                Ok(Some(json)) => {
                    if let Ok(cached) = serde_json::from_str(&json) {
                        stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                        stats.page_hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(cached);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    bypass(e);
                    return self.feed_from_db(viewer, page).await;
                }
            }
        }
        let read = match self.read_feed_ids(viewer).await {
            Ok(read) => read,
            Err(e) => {
                bypass(e);
                return self.feed_from_db(viewer, page).await;
            }
        };
        let ids = match read.ids.as_deref() {
            Some(ids) => {
                stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                parse_ids(ids)
            }
            None => {
                stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                match self.rebuild_feed_ids(viewer, &read.generation).await? {
                    Some(ids) => ids,
                    None => return self.feed_from_db(viewer, page).await,
                }
            }
        };
        let complete = ids.len() < FEED_WINDOW;
        let before = before(page);
        let wanted: Vec<i64> = ids
            .into_iter()
            .filter(|id| *id < before)
            .take(fetch(page) as usize)
            .collect();
        if !complete && wanted.len() < fetch(page) as usize {
            return self.feed_from_db(viewer, page).await; // past the cached window
        }
        let result = PhotoPage::from_rows(self.hydrate(viewer, &wanted).await?, page);
        if first {
            self.store_first_page(viewer, page.limit.get(), &read.generation, &result)
                .await;
        }
        Ok(result)
    }

    async fn feed_ids_from_db(&self, viewer: UserId) -> StoreResult<Vec<i64>> {
        self.db(
            "reading feed ids",
            sqlx::query_scalar::<_, i64>(
                "SELECT p.id
                 FROM (SELECT $1::bigint AS uid UNION ALL
                       SELECT followee_id FROM follows WHERE follower_id = $1) f
                 CROSS JOIN LATERAL (
                     SELECT id FROM photos WHERE user_id = f.uid AND status = 'ready'
                     ORDER BY id DESC LIMIT $2
                 ) p
                 ORDER BY p.id DESC LIMIT $2",
            )
            .bind(viewer.0)
            .bind(FEED_WINDOW as i64)
            .fetch_all(&self.inner.pg),
        )
        .await
    }

    /// Full photo rows for `ids`, newest first, as `viewer` sees them.
    async fn hydrate(&self, viewer: UserId, ids: &[i64]) -> StoreResult<Vec<Photo>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .db(
                "reading feed photos",
                sqlx::query_as::<_, PhotoRow>(AssertSqlSafe(format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
                     WHERE p.id = ANY($2) ORDER BY p.id DESC"
                )))
                .bind(viewer.0)
                .bind(ids)
                .fetch_all(&self.inner.pg),
            )
            .await?;
        Ok(rows.into_iter().map(Photo::from).collect())
    }

    async fn feed_from_db(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        let rows = self
            .db(
                "reading a feed",
                sqlx::query_as::<_, PhotoRow>(AssertSqlSafe(format!(
                    "SELECT {PHOTO_COLUMNS}
                     FROM (SELECT $1::bigint AS uid UNION ALL
                           SELECT followee_id FROM follows WHERE follower_id = $1) f
                     CROSS JOIN LATERAL (
                         SELECT * FROM photos WHERE user_id = f.uid AND status = 'ready' AND id < $2
                         ORDER BY id DESC LIMIT $3
                     ) p
                     JOIN users u ON u.id = p.user_id
                     ORDER BY p.id DESC LIMIT $3"
                )))
                .bind(viewer.0)
                .bind(before(page))
                .bind(fetch(page))
                .fetch_all(&self.inner.pg),
            )
            .await?;
        Ok(PhotoPage::from_rows(
            rows.into_iter().map(Photo::from).collect(),
            page,
        ))
    }

    async fn session_redis<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        self.redis(cmd).await.map_err(|e| {
            if e.is::<QueueFull>() {
                StoreError::Overloaded
            } else {
                StoreError::SessionsUnavailable(e.context("session store (Redis)"))
            }
        })
    }
}

/// A session is its key (`session:<token hash>` → `<user id>:<name>`, with
/// the session's expiry) plus a member of the user's index (a sorted set
/// `sessionsof:<user id>` of token hashes scored by expiry), in one step.
/// The index drops expired members and, past ARGV[6] live ones, ends the
/// oldest sessions; it expires with its newest session. (KEYS: session,
/// index; ARGV: value, ttl s, token hash, expires at, now, cap, session key
/// prefix. The old sessions' keys are derived in the script, which is fine
/// on one Redis server, not on a cluster.)
const CREATE_SESSION: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    redis.call('DEL', ARGV[7] .. old)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
end
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[2], newest[2])
return 0
";

/// Revokes a session and takes it out of its user's index (KEYS: session;
/// ARGV: index key prefix, token hash). Returns 1 if it existed.
const REVOKE_SESSION: &str = r"
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
redis.call('DEL', KEYS[1])
local user = string.match(value, '^(%d+):')
if user then redis.call('ZREM', ARGV[1] .. user, ARGV[2]) end
return 1
";

/// Sign-in attempts are reserved in Redis so every process sees them, in
/// one script so the check and the count are one atomic step (KEYS:
/// counters; ARGV[1]: window in ms, ARGV[1 + i]: the maximum of KEYS[i]).
/// A counter's window starts with its first count (its expiry). Returns
/// {0, 0} when granted (every counter counted), or {i, ms left} when
/// counter i is full (nothing counted).
const RESERVE_SIGN_IN: &str = r"
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    return {i, redis.call('PTTL', key)}
  end
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
end
return {0, 0}
";

/// Gives back one reserved attempt on each of the first ARGV[1] counters
/// and forgets the rest (KEYS: counters).
const RELEASE_SIGN_IN: &str = r"
local release = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if i <= release and n > 1 then redis.call('DECR', key) else redis.call('DEL', key) end
end
return 0
";

/// Store the rebuilt feed only if no invalidation happened since the reader
/// read the generation (KEYS: feed, generation, lock; ARGV: generation as
/// read, ids, ttl). Always releases the rebuild lock.
const SET_IF_GENERATION: &str = r"
local current = redis.call('GET', KEYS[2]) or ''
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
redis.call('DEL', KEYS[3])
return 0
";

/// Store a rendered first page (a hash field per page size) only if no
/// invalidation happened since the generation was read (KEYS: pages,
/// generation; ARGV: generation as read, limit, page JSON, ttl in ms).
const SET_PAGE_IF_GENERATION: &str = r"
local current = redis.call('GET', KEYS[2]) or ''
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 0
";

/// What one round trip to the cache found for a viewer.
struct CacheRead {
    generation: Option<String>,
    ids: Option<String>,
}

fn parse_ids(s: &str) -> Vec<i64> {
    s.split(',').filter_map(|x| x.parse().ok()).collect()
}

fn before(page: PageQuery) -> i64 {
    page.before.map_or(i64::MAX, |c| c.0.0)
}

fn fetch(page: PageQuery) -> i64 {
    i64::from(page.limit.get()) + 1
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The columns of a `Photo` for `p` joined with its owner `u`; `$1` is the
/// viewer (0 when anonymous: no user has id 0).
const PHOTO_COLUMNS: &str = "p.id, p.user_id, u.username, p.caption, p.file_name, p.width, \
     p.height, p.created_at, p.like_count, p.status, \
     EXISTS (SELECT 1 FROM likes l WHERE l.photo_id = p.id AND l.user_id = $1) AS liked";

#[derive(sqlx::FromRow)]
struct PhotoRow {
    id: i64,
    user_id: i64,
    username: String,
    caption: String,
    file_name: String,
    width: i32,
    height: i32,
    created_at: i64,
    like_count: i64,
    status: String,
    liked: bool,
}

impl From<PhotoRow> for Photo {
    fn from(r: PhotoRow) -> Self {
        Photo {
            id: PhotoId(r.id),
            user_id: UserId(r.user_id),
            username: r.username,
            caption: r.caption,
            url: Photo::url_for(&r.file_name),
            width: r.width.max(0) as u32,
            height: r.height.max(0) as u32,
            created_at: r.created_at,
            like_count: r.like_count,
            liked_by_me: r.liked,
            status: PhotoStatus::parse(&r.status),
        }
    }
}

#[derive(sqlx::FromRow)]
struct ProfileRow {
    id: i64,
    username: String,
    followers: i64,
    following: i64,
    photos: i64,
    followed_by_me: bool,
    email: Option<String>,
}

const PROFILE: &str = "SELECT u.id, u.username, u.email,
        (SELECT COUNT(*) FROM follows WHERE followee_id = u.id) AS followers,
        (SELECT COUNT(*) FROM follows WHERE follower_id = u.id) AS following,
        (SELECT COUNT(*) FROM photos WHERE user_id = u.id AND status = 'ready') AS photos,
        EXISTS (SELECT 1 FROM follows WHERE follower_id = $2 AND followee_id = u.id) AS followed_by_me
     FROM users u WHERE u.id = $1";

impl ProfileRow {
    fn profile(&self) -> UserProfile {
        UserProfile {
            id: UserId(self.id),
            username: Username::from_trusted(self.username.clone()),
            followers: self.followers,
            following: self.following,
            photos: self.photos,
            followed_by_me: self.followed_by_me,
        }
    }
}

fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

impl Store for Stage2Store {
    async fn ping(&self) -> StoreResult<()> {
        self.db("ping", sqlx::query("SELECT 1").execute(&self.inner.pg))
            .await?;
        self.session_redis::<String>(&redis::cmd("PING")).await?;
        Ok(())
    }

    async fn integrity(&self) -> StoreResult<Integrity> {
        let pg = &self.inner.pg;
        let count = |sql: &'static str| async move {
            self.db(
                "checking integrity",
                sqlx::query_scalar::<_, i64>(sql).fetch_one(pg),
            )
            .await
        };
        let mut problems = Vec::new();
        // Foreign keys are enforced by Postgres; the like counter is ours.
        let wrong = count(minigram::store::LIKE_COUNT_MISMATCHES).await?;
        if wrong > 0 {
            problems.push(format!(
                "{wrong} photos' like_count differs from their like rows"
            ));
        }
        let files = self
            .db(
                "checking integrity",
                sqlx::query_scalar::<_, String>(
                    "SELECT DISTINCT file_name FROM photos WHERE status = 'ready'",
                )
                .fetch_all(pg),
            )
            .await?;
        Ok(Integrity {
            users: count("SELECT COUNT(*) FROM users").await?,
            photos: count("SELECT COUNT(*) FROM photos").await?,
            likes: count("SELECT COUNT(*) FROM likes").await?,
            follows: count("SELECT COUNT(*) FROM follows").await?,
            problems,
            files,
        })
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.db(
            "counting users",
            sqlx::query_scalar::<_, bool>("SELECT NOT EXISTS (SELECT 1 FROM users)")
                .fetch_one(&self.inner.pg),
        )
        .await
    }

    async fn create_user(&self, user: NewUser) -> StoreResult<UserId> {
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO users (username, email, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user.username.as_str())
        .bind(user.email.as_ref().map(Email::as_str))
        .bind(&user.password_hash)
        .bind(now_ms())
        .fetch_one(&self.inner.pg);
        match self.timed(inserted).await? {
            Ok(id) => Ok(UserId(id)),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::UsernameTaken)
            }
            Err(e) => Err(self.pg_error(e, "creating a user")),
        }
    }

    async fn credentials_for(&self, username: &str) -> StoreResult<Option<Credentials>> {
        let row = self
            .db(
                "reading credentials",
                sqlx::query_as::<_, (i64, String, String)>(
                    "SELECT id, username, password_hash FROM users WHERE lower(username) = lower($1)",
                )
                .bind(username)
                .fetch_optional(&self.inner.pg),
            )
            .await?;
        Ok(row.map(|(id, username, password_hash)| Credentials {
            user_id: UserId(id),
            username: Username::from_trusted(username),
            password_hash,
        }))
    }

    async fn create_session(&self, session: NewSession) -> StoreResult<()> {
        let ttl = session.expires_at - minigram::app::now_secs();
        if ttl <= 0 {
            return Ok(()); // already expired: nothing to keep
        }
        let token = hex::encode(session.token_hash);
        let cmd = redis::cmd("EVAL")
            .arg(CREATE_SESSION)
            .arg(2)
            .arg(self.key("session", &token))
            .arg(self.key("sessionsof", session.user.user_id.0))
            .arg(format!(
                "{}:{}",
                session.user.user_id.0, session.user.username
            ))
            .arg(ttl)
            .arg(&token)
            .arg(session.expires_at)
            .arg(minigram::app::now_secs())
            .arg(minigram::auth::MAX_SESSIONS_PER_USER)
            .arg(self.key("session", ""))
            .clone();
        self.session_redis::<()>(&cmd).await
    }

    async fn purge_expired_sessions(&self) -> StoreResult<u64> {
        // Session keys carry their expiry (EX): Redis drops them itself,
        // and each user's index is trimmed by expiry on every sign-in.
        Ok(0)
    }

    async fn session_user(&self, token_hash: [u8; 32]) -> StoreResult<Option<SessionUser>> {
        let cmd = redis::cmd("GET")
            .arg(self.key("session", hex::encode(token_hash)))
            .clone();
        let value: Option<String> = self.session_redis(&cmd).await?;
        Ok(value.and_then(|v| {
            let (id, name) = v.split_once(':')?;
            Some(SessionUser {
                user_id: UserId(id.parse().ok()?),
                username: Username::from_trusted(name.to_owned()),
            })
        }))
    }

    async fn revoke_session(&self, token_hash: [u8; 32]) -> StoreResult<bool> {
        let token = hex::encode(token_hash);
        let cmd = redis::cmd("EVAL")
            .arg(REVOKE_SESSION)
            .arg(1)
            .arg(self.key("session", &token))
            .arg(self.key("sessionsof", ""))
            .arg(&token)
            .clone();
        let removed: i64 = self.session_redis(&cmd).await?;
        Ok(removed > 0)
    }

    async fn reserve_sign_in(
        &self,
        limits: &[AttemptLimit],
        window: Duration,
    ) -> StoreResult<Reservation> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RESERVE_SIGN_IN).arg(limits.len());
        for limit in limits {
            cmd.arg(self.key("loginfail", &limit.key));
        }
        cmd.arg(window.as_millis().max(1) as u64);
        for limit in limits {
            cmd.arg(limit.max);
        }
        let (locked, ttl_ms): (usize, i64) = self.session_redis(&cmd).await?;
        Ok(match locked {
            0 => Reservation::Granted,
            i => Reservation::Locked {
                limit: i - 1,
                retry_after_secs: (ttl_ms.max(0) as u64).div_ceil(1000).max(1),
            },
        })
    }

    async fn release_sign_in(&self, release: &[&str], clear: &[&str]) -> StoreResult<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE_SIGN_IN).arg(release.len() + clear.len());
        for key in release.iter().chain(clear) {
            cmd.arg(self.key("loginfail", key));
        }
        cmd.arg(release.len());
        self.session_redis::<()>(&cmd).await
    }

    async fn user_profile(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> StoreResult<Option<UserProfile>> {
        let row = self
            .db(
                "reading a profile",
                sqlx::query_as::<_, ProfileRow>(PROFILE)
                    .bind(user.0)
                    .bind(viewer.map_or(0, |v| v.0))
                    .fetch_optional(&self.inner.pg),
            )
            .await?;
        Ok(row.map(|r| r.profile()))
    }

    async fn my_profile(&self, me: UserId) -> StoreResult<Option<MyProfile>> {
        let row = self
            .db(
                "reading my profile",
                sqlx::query_as::<_, ProfileRow>(PROFILE)
                    .bind(me.0)
                    .bind(0i64)
                    .fetch_optional(&self.inner.pg),
            )
            .await?;
        Ok(row.map(|r| MyProfile {
            profile: r.profile(),
            email: r.email.map(Email::from_trusted),
        }))
    }

    async fn set_follow(
        &self,
        follower: UserId,
        followee: UserId,
        on: bool,
    ) -> StoreResult<FollowState> {
        let result: Result<Option<i64>, sqlx::Error> = self
            .timed(async {
            let mut tx = self.inner.pg.begin().await?;
            let exists = sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE id = $1")
                .bind(followee.0)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(None);
            }
            let sql = if on {
                "INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2 AND $3::bigint IS NOT NULL"
            };
            sqlx::query(sql)
                .bind(follower.0)
                .bind(followee.0)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            let followers = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM follows WHERE followee_id = $1")
                .bind(followee.0)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(followers))
        })
        .await?;
        let followers = result
            .map_err(|e| self.pg_error(e, "following"))?
            .ok_or(StoreError::NotFound)?;
        // Logged and counted inside; the follow is committed either way.
        let _ = self.invalidate_feeds(&[follower.0]).await;
        Ok(FollowState {
            following: on,
            followers,
        })
    }

    async fn insert_photo(&self, photo: NewPhoto) -> StoreResult<Photo> {
        let created_at = now_ms();
        let row = self
            .db(
                "inserting a photo",
                sqlx::query_as::<_, (i64, String)>(
                    "INSERT INTO photos (user_id, caption, file_name, width, height, created_at, status)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     RETURNING id, (SELECT username FROM users WHERE id = $1)",
                )
                .bind(photo.user_id.0)
                .bind(photo.caption.as_str())
                .bind(&photo.file_name)
                .bind(photo.width as i32)
                .bind(photo.height as i32)
                .bind(created_at)
                .bind(photo.status.as_str())
                .fetch_one(&self.inner.pg),
            )
            .await?;
        // A queued photo is invisible until the worker has processed it;
        // the worker invalidates then. The photo is committed: a failed
        // invalidation must not turn its answer into an error (the client
        // would retry and post it twice); it is logged and counted.
        if photo.status == PhotoStatus::Ready
            && let Err(e) = self.invalidate_for_new_photo(photo.user_id).await
        {
            tracing::warn!(error = %e, "feeds of a new photo not invalidated");
        }
        Ok(Photo {
            id: PhotoId(row.0),
            user_id: photo.user_id,
            username: row.1,
            caption: photo.caption.as_str().to_owned(),
            url: Photo::url_for(&photo.file_name),
            width: photo.width,
            height: photo.height,
            created_at,
            like_count: 0,
            liked_by_me: false,
            status: photo.status,
        })
    }

    async fn photo(&self, viewer: Option<UserId>, photo: PhotoId) -> StoreResult<Option<Photo>> {
        let row = self
            .db(
                "reading a photo",
                sqlx::query_as::<_, PhotoRow>(AssertSqlSafe(format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id WHERE p.id = $2"
                )))
                .bind(viewer.map_or(0, |v| v.0))
                .bind(photo.0)
                .fetch_optional(&self.inner.pg),
            )
            .await?;
        Ok(row.map(Photo::from))
    }

    async fn set_like(&self, user: UserId, photo: PhotoId, on: bool) -> StoreResult<LikeState> {
        // One statement: the like row and the counter change together, and
        // the UPDATE's row lock serializes concurrent likes of one photo.
        let sql = if on {
            "WITH changed AS (
                 INSERT INTO likes (photo_id, user_id, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING RETURNING 1)
             UPDATE photos SET like_count = like_count + (SELECT COUNT(*) FROM changed)
             WHERE id = $1 RETURNING like_count"
        } else {
            "WITH changed AS (
                 DELETE FROM likes WHERE photo_id = $1 AND user_id = $2 AND $3::bigint IS NOT NULL RETURNING 1)
             UPDATE photos SET like_count = like_count - (SELECT COUNT(*) FROM changed)
             WHERE id = $1 RETURNING like_count"
        };
        let liked = sqlx::query_scalar::<_, i64>(sql)
            .bind(photo.0)
            .bind(user.0)
            .bind(now_ms())
            .fetch_optional(&self.inner.pg);
        match self.timed(liked).await? {
            Ok(Some(like_count)) => {
                // The liker's cached pages show likedByMe and the count:
                // drop them so the liker's next read is fresh.
                // Logged and counted inside; the like is committed either way.
                let _ = self.invalidate_feeds(&[user.0]).await;
                Ok(LikeState {
                    liked: on,
                    like_count,
                })
            }
            Ok(None) => Err(StoreError::NotFound),
            Err(e) if is_fk_violation(&e) => Err(StoreError::NotFound),
            Err(e) => Err(self.pg_error(e, "liking")),
        }
    }

    async fn feed(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        if self.inner.config.feed_cache {
            self.feed_cached(viewer, page).await
        } else {
            self.feed_from_db(viewer, page).await
        }
    }

    async fn explore(&self, viewer: Option<UserId>, page: PageQuery) -> StoreResult<PhotoPage> {
        let rows = self
            .db(
                "reading explore",
                sqlx::query_as::<_, PhotoRow>(AssertSqlSafe(format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
                     WHERE p.status = 'ready' AND p.id < $2 ORDER BY p.id DESC LIMIT $3"
                )))
                .bind(viewer.map_or(0, |v| v.0))
                .bind(before(page))
                .bind(fetch(page))
                .fetch_all(&self.inner.pg),
            )
            .await?;
        Ok(PhotoPage::from_rows(
            rows.into_iter().map(Photo::from).collect(),
            page,
        ))
    }

    async fn user_photos(
        &self,
        viewer: Option<UserId>,
        owner: UserId,
        page: PageQuery,
    ) -> StoreResult<Option<PhotoPage>> {
        let exists = self
            .db(
                "checking a user",
                sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE id = $1")
                    .bind(owner.0)
                    .fetch_optional(&self.inner.pg),
            )
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows = self
            .db(
                "reading a user's photos",
                sqlx::query_as::<_, PhotoRow>(AssertSqlSafe(format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
                     WHERE p.user_id = $4 AND p.status = 'ready' AND p.id < $2
                     ORDER BY p.id DESC LIMIT $3"
                )))
                .bind(viewer.map_or(0, |v| v.0))
                .bind(before(page))
                .bind(fetch(page))
                .bind(owner.0)
                .fetch_all(&self.inner.pg),
            )
            .await?;
        Ok(Some(PhotoPage::from_rows(
            rows.into_iter().map(Photo::from).collect(),
            page,
        )))
    }

    fn figures(&self) -> Vec<Figure> {
        let st = &self.inner.stats;
        let pg_size = self.inner.pg.size() as f64;
        let pg_idle = self.inner.pg.num_idle() as f64;
        let pg_used = (pg_size - pg_idle).max(0.0);
        let pg_waiting = (st.pg_in_flight.load(Ordering::Relaxed) as f64 - pg_used).max(0.0);
        let redis = self.inner.redis.state();
        let redis_used = redis.connections.saturating_sub(redis.idle_connections) as f64;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        vec![
            Figure::gauge(
                "postgres.used",
                "Postgres connections in use",
                "db_client_connection_count",
                pg_used,
            )
            .labels(&[("pool", "postgres"), ("state", "used")]),
            Figure::gauge(
                "postgres.idle",
                "Postgres connections idle",
                "db_client_connection_count",
                pg_idle,
            )
            .labels(&[("pool", "postgres"), ("state", "idle")]),
            Figure::gauge(
                "postgres.waiting",
                "Postgres pool waiters",
                "db_client_connection_pending_requests",
                pg_waiting,
            )
            .labels(&[("pool", "postgres")]),
            Figure::counter(
                "postgres.timeouts",
                "Postgres pool timeouts (503)",
                "db_client_connection_timeouts_total",
                load(&st.pg_timeouts),
            )
            .labels(&[("pool", "postgres")]),
            Figure::counter(
                "postgres.shed",
                "Postgres calls refused at once: the pool's queue was full (503)",
                "db_client_connection_shed_total",
                load(&st.pg_shed),
            )
            .labels(&[("pool", "postgres")]),
            Figure::gauge(
                "redis.used",
                "Redis connections in use",
                "db_client_connection_count",
                redis_used,
            )
            .labels(&[("pool", "redis"), ("state", "used")]),
            Figure::gauge(
                "redis.waiting",
                "Redis pool waiters",
                "db_client_connection_pending_requests",
                redis.statistics.pending_gets() as f64,
            )
            .labels(&[("pool", "redis")]),
            Figure::counter(
                "redis.timeouts",
                "Redis pool timeouts (503)",
                "db_client_connection_timeouts_total",
                load(&st.redis_timeouts),
            )
            .labels(&[("pool", "redis")]),
            Figure::counter(
                "redis.shed",
                "Redis calls refused at once: the pool's queue was full (503)",
                "db_client_connection_shed_total",
                load(&st.redis_shed),
            )
            .labels(&[("pool", "redis")]),
            Figure::counter(
                "cache.hits",
                "Feed cache hits",
                "minigram_feed_cache_requests_total",
                load(&st.cache_hits),
            )
            .labels(&[("result", "hit")]),
            Figure::counter(
                "cache.misses",
                "Feed cache misses (rebuilt from Postgres)",
                "minigram_feed_cache_requests_total",
                load(&st.cache_misses),
            )
            .labels(&[("result", "miss")]),
            Figure::counter(
                "cache.bypasses",
                "Feed cache bypassed (Redis failing or busy)",
                "minigram_feed_cache_requests_total",
                load(&st.cache_bypasses),
            )
            .labels(&[("result", "bypass")]),
            Figure::gauge(
                "photos.queued",
                "Photos waiting for the background worker",
                "minigram_photo_queue_depth",
                st.photo_queue_depth.load(Ordering::Relaxed) as f64,
            ),
            Figure::counter(
                "photos.processed",
                "Photos processed by the background worker",
                "minigram_photos_processed_total",
                load(&st.photos_processed),
            ),
            Figure::gauge(
                "photos.lagMs",
                "Upload to visible, last queued photo (ms)",
                "minigram_photo_visible_lag_milliseconds",
                load(&st.photo_lag_ms),
            ),
        ]
    }

    fn queues_photos(&self) -> bool {
        self.inner.config.photo_queue
    }

    async fn photo_queue_full(&self) -> StoreResult<bool> {
        let depth: i64 = self
            .redis(redis::cmd("LLEN").arg(self.photo_queue_key()))
            .await
            .map_err(StoreError::Unavailable)?;
        self.inner
            .stats
            .photo_queue_depth
            .store(depth, Ordering::Relaxed);
        Ok(depth as u64 >= self.inner.config.photo_queue_max)
    }

    async fn enqueue_photo(&self, photo: PhotoId) -> StoreResult<()> {
        self.redis::<i64>(redis::cmd("LPUSH").arg(self.photo_queue_key()).arg(photo.0))
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(())
    }

    async fn import(&self, data: Dataset) -> StoreResult<ImportSummary> {
        self.db(
            "importing a dataset",
            crate::import::copy_dataset(&self.inner.pg, &data),
        )
        .await
    }
}
