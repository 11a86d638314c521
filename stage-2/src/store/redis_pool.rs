//! Redis connections behind a bounded gate, shared by the components that
//! use Redis (sessions and sign-in counters, the feed cache, the photo
//! queue).
//!
//! A pool of multiplexed connections (bb8), with a short acquire timeout
//! and at most `pool_queue_max` calls waiting for a connection (one more
//! is refused at once: [`QueueFull`]). Every call is timed as `cache` in
//! Server-Timing. A connection whose command failed at the connection
//! level is retired, so a Redis that restarts is reconnected by itself.

use anyhow::Context;
use bb8_redis::RedisConnectionManager;
use minigram::timing::{self, Phase, Remote};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{InFlight, Stage2Config, Stage2Stats, server_of};

/// A Redis call refused because the pool's queue was full: the caller
/// answers 503 `overloaded` (sessions) or reads Postgres (the feed cache).
#[derive(Debug, thiserror::Error)]
#[error("the Redis pool's queue is full")]
pub struct QueueFull;

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

/// One Redis server's pool and its gate. Cheap to clone (the pool is an
/// `Arc` inside); both Redis roles count against one in-flight bound.
#[derive(Clone)]
pub struct RedisPool {
    pool: bb8::Pool<RedisManager>,
    /// Calls that may hold or wait for a connection at once.
    limit: i64,
    stats: Arc<Stage2Stats>,
}

impl RedisPool {
    /// A bounded pool of connections to the Redis at `url`, after one
    /// direct connection that fails with a precise message if Redis is not
    /// there (`flag` names the setting that points to it).
    pub async fn connect(
        config: &Stage2Config,
        url: &str,
        flag: &str,
        stats: Arc<Stage2Stats>,
    ) -> anyhow::Result<Self> {
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
        let pool = bb8::Pool::builder()
            .max_size(config.redis_pool_size.max(1))
            .connection_timeout(config.acquire_timeout)
            // While Redis is down, fail at once (503) instead of retrying
            // the connection for the whole acquire timeout.
            .retry_connection(false)
            // Broken connections are detected by their failed command
            // instead (see `RedisManager`).
            .test_on_check_out(false)
            .build_unchecked(RedisManager(manager));
        Ok(Self {
            pool,
            limit: i64::from(config.redis_pool_size.max(1)) + i64::from(config.pool_queue_max),
            stats,
        })
    }

    /// The bb8 pool itself (tests read keys through it; the figures read
    /// its state).
    pub fn pool(&self) -> &bb8::Pool<RedisManager> {
        &self.pool
    }

    /// Runs Redis work on a pooled connection, timing it; a
    /// connection-level failure retires the connection.
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> anyhow::Result<T> {
        // The same bounded queue as Postgres's, counted over both Redis
        // pools when the cache has its own server.
        let stats = &self.stats;
        let Some(_in_flight) = InFlight::join(&stats.redis_in_flight, self.limit) else {
            stats.redis_shed.fetch_add(1, Ordering::Relaxed);
            return Err(anyhow::Error::new(QueueFull));
        };
        let started = Instant::now();
        let result = async {
            let mut pooled = self.pool.get().await.map_err(|e| {
                if matches!(e, bb8::RunError::TimedOut) {
                    stats.redis_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Error::new(e).context("waiting for a Redis connection")
            })?;
            // One command, pipeline or script: one round trip (a script
            // Redis has not cached yet costs a SCRIPT LOAD more, once).
            timing::round_trips(Remote::Redis, 1);
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

    /// One command.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> anyhow::Result<T> {
        self.run(async |c| cmd.query_async::<T>(c).await).await
    }

    /// One pipeline (one round trip; atomic if the pipeline says so).
    pub async fn pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> anyhow::Result<T> {
        self.run(async |c| pipe.query_async::<T>(c).await).await
    }

    /// One script (EVALSHA, loading it on first use).
    pub async fn script<T: redis::FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> anyhow::Result<T> {
        self.run(async |c| script.invoke_async::<T>(c).await).await
    }
}

/// Every Redis key starts with `<prefix>:`, so several labs (or tests) can
/// share one Redis.
#[derive(Debug, Clone)]
pub struct Keys(pub String);

impl Keys {
    /// `<prefix>:<kind>:<id>`.
    pub fn of(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}:{kind}:{id}", self.0)
    }
}
