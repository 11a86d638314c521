//! Stage 2's `Store`: Postgres behind a bounded pool and Redis behind a
//! bounded pool, composed from components that each live in their own
//! file — what changes when Minigram scales out.
//!
//! - [`postgres`]: the record (users, photos, follows, likes), every query
//!   of the app; alone, it is stage 2 with every switch off.
//! - [`sessions`]: sessions and sign-in counters in Redis, so any process
//!   can serve any user and a logout is seen by all at once.
//! - [`feed_cache`] (optional, `--feed-cache`): cached feeds, invalidated
//!   by the writes below; its module doc says what a reader may see stale.
//! - [`photo_queue`] (optional, `--photo-processing queue`): uploads
//!   processed by background workers instead of in the request.
//! - [`session_feed`] (with the cache on the sessions' Redis): a feed read
//!   resolves its session and reads the cached first page in one round
//!   trip (and on a miss, what else is cached, so a miss costs three).
//! - [`replicas`] (optional, `--read-replica URL`, repeatable): reads
//!   that may be a little old go to streaming replicas; each person still
//!   reads their own writes (the store records where the primary was after
//!   them, and [`sessions`] hands that back with their session).
//! - [`timelines`] (optional, `--feed-strategy push|hybrid`): each
//!   person's feed precomputed as a Redis timeline, written by fan-out
//!   workers ([`crate::fanout`]) from a stream of new photos; accounts
//!   with many followers merged at read time instead (hybrid).
//! - [`redis_pool`]: the Redis connections the components share; with
//!   `--cache-redis-url` the cache has its own server (which may evict),
//!   while sessions, counters and the queue stay on a `noeviction` one.
//! - [`figures`]: the counters they keep and what the metrics read.
//!
//! Overload and faults: both pools are bounded with short acquire
//! timeouts, and at most `pool_queue_max` calls wait for a connection of
//! each (one more is refused at once); a refusal, a timeout or a lost
//! connection is a 503 with Retry-After, never a hang. Pools reconnect by
//! themselves when a server returns.
//!
//! This file connects the parts and answers each `Store` call with the
//! component that owns it; what it adds is *when* things happen after a
//! write commits, before its answer: the cache is invalidated, a new
//! photo is announced to the timelines, and with replicas the writer's
//! position is recorded.

mod config;
pub mod feed_cache;
mod figures;
pub mod photo_queue;
pub mod postgres;
pub mod redis_pool;
pub mod replicas;
pub mod session_feed;
pub mod sessions;
pub mod timelines;

use minigram::auth::{AttemptLimit, Reservation};
use minigram::domain::{PageQuery, PhotoId, UserId};
use minigram::store::{
    Credentials, Dataset, FollowState, ImportSummary, Integrity, LikeState, MyProfile, NewPhoto,
    NewSession, NewUser, Photo, PhotoPage, PhotoStatus, SessionUser, Store, StoreError,
    StoreResult, UserProfile,
};
use minigram::telemetry::Figure;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub use config::Stage2Config;
pub use feed_cache::{FEED_WINDOW, FeedCache, TTL_JITTER};
pub use figures::Stage2Stats;
pub use photo_queue::PhotoQueue;
pub use postgres::Postgres;
pub use redis_pool::{RedisManager, RedisPool};
pub use replicas::Replicas;
pub use session_feed::{SessionFeed, SessionPage};
pub use sessions::Sessions;
pub use timelines::{FeedStrategy, Timelines};

#[derive(Clone)]
pub struct Stage2Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Postgres,
    /// The state Redis: sessions, sign-in counters, the photo queue.
    redis: RedisPool,
    sessions: Sessions,
    cache: Option<FeedCache>,
    /// With the cache on the sessions' Redis: session + page in one trip.
    session_feed: Option<SessionFeed>,
    queue: Option<PhotoQueue>,
    timelines: Option<Arc<Timelines>>,
    config: Stage2Config,
    stats: Arc<Stage2Stats>,
}

impl Stage2Store {
    /// Connects to Postgres (creating the database if missing, running
    /// migrations) and to Redis, and switches on the components the
    /// configuration asks for. Fails with a message naming the server that
    /// could not be reached.
    pub async fn connect(config: Stage2Config) -> anyhow::Result<Self> {
        let stats = Arc::new(Stage2Stats::default());
        let db = Postgres::connect(&config, Arc::clone(&stats)).await?;
        let redis = RedisPool::connect(
            &config,
            &config.redis_url,
            "--redis-url / REDIS_URL",
            Arc::clone(&stats),
        )
        .await?;
        let keys = redis_pool::Keys(config.redis_prefix.clone());
        let own_cache_server = config
            .cache_redis_url
            .as_ref()
            .is_some_and(|url| *url != config.redis_url);
        let session_feed = (config.feed_cache && !own_cache_server)
            .then(|| SessionFeed::new(redis.clone(), keys.clone(), Arc::clone(&stats)));
        let cache = if !config.feed_cache {
            None
        } else {
            let cache_redis = match &config.cache_redis_url {
                Some(url) if own_cache_server => {
                    let flag = "--cache-redis-url / CACHE_REDIS_URL";
                    RedisPool::connect(&config, url, flag, Arc::clone(&stats)).await?
                }
                _ => redis.clone(),
            };
            Some(FeedCache::new(
                &config,
                cache_redis,
                db.clone(),
                Arc::clone(&stats),
            ))
        };
        let queue = config
            .photo_queue
            .then(|| PhotoQueue::new(&config, redis.clone(), db.clone(), Arc::clone(&stats)));
        let timelines = Timelines::new(&config, redis.clone(), db.clone()).map(Arc::new);
        Ok(Self {
            inner: Arc::new(Inner {
                timelines,
                sessions: Sessions::new(redis.clone(), keys, !config.read_replicas.is_empty()),
                db,
                redis,
                cache,
                session_feed,
                queue,
                config,
                stats,
            }),
        })
    }

    pub fn config(&self) -> &Stage2Config {
        &self.inner.config
    }

    pub fn stats(&self) -> &Stage2Stats {
        &self.inner.stats
    }

    /// The timelines, with `--feed-strategy push|hybrid`.
    pub fn timelines(&self) -> Option<&Arc<Timelines>> {
        self.inner.timelines.as_ref()
    }

    pub fn pg(&self) -> &sqlx::PgPool {
        self.inner.db.pool()
    }

    pub fn redis_pool(&self) -> &bb8::Pool<RedisManager> {
        self.inner.redis.pool()
    }

    /// Drops the cached feeds of `viewers` (nothing without a cache). A
    /// failure is logged and counted by the cache; the change itself is
    /// committed either way.
    async fn invalidate(&self, viewers: &[i64]) -> anyhow::Result<()> {
        match &self.inner.cache {
            Some(cache) => cache.invalidate(viewers).await,
            None => Ok(()),
        }
    }

    /// With read replicas, after `user`'s write has committed: records
    /// where the primary is now, so their next reads (in any process) skip
    /// replicas that have not replayed that far. One Postgres and one Redis
    /// round trip: the price of read-your-writes. A failure is logged, not
    /// answered (the write is committed): the writer may then miss it on a
    /// lagging replica, for at most that replica's lag.
    async fn record_write(&self, user: UserId) {
        if self.inner.db.replicas().is_none() {
            return;
        }
        let recorded = async {
            let position = self.inner.db.position().await?;
            self.inner.sessions.wrote(user, position).await
        };
        if let Err(e) = recorded.await {
            tracing::warn!(error = %e, user = user.0, "write position not recorded");
        }
    }

    /// A photo of `owner` became visible: announce it to the timelines
    /// (one XADD; fan-out happens later, in the workers) and drop the
    /// cached feeds of the owner and of every follower. An error means
    /// some cached feeds may be stale (the photo is committed either way):
    /// the queue worker retries (announcing again does no harm: fan-out is
    /// idempotent).
    pub async fn photo_visible(&self, owner: UserId, photo: PhotoId) -> StoreResult<()> {
        if let Some(timelines) = &self.inner.timelines {
            timelines.announce(owner, photo).await;
        }
        if self.inner.cache.is_none() {
            return Ok(());
        }
        let mut viewers = self.inner.db.followers(owner, None).await?;
        viewers.push(owner.0);
        self.invalidate(&viewers)
            .await
            .map_err(StoreError::Unavailable)
    }
}

/// Where a URL points (`host:port`), never its password, for error
/// messages.
pub(crate) fn server_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => u.scheme().to_owned(),
        },
        Err(e) => format!("an unreadable URL ({e})"),
    }
}

/// Counts a call to a pool as in flight while it lives: the bounded queue
/// in front of each pool. Under overload, waiting up to the acquire
/// timeout only to fail makes every answer slow, so a call that would find
/// the queue full is refused at once (a fast 503, as the admission limit
/// and the hash queue do).
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

impl Store for Stage2Store {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.db.ping().await?;
        self.inner.sessions.ping().await
    }

    async fn integrity(&self) -> StoreResult<Integrity> {
        self.inner.db.integrity().await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.inner.db.is_empty().await
    }

    async fn create_user(&self, user: NewUser) -> StoreResult<UserId> {
        let id = self.inner.db.create_user(user).await?;
        self.record_write(id).await;
        Ok(id)
    }

    async fn credentials_for(&self, username: &str) -> StoreResult<Option<Credentials>> {
        self.inner.db.credentials_for(username).await
    }

    async fn create_session(&self, session: NewSession) -> StoreResult<()> {
        self.inner.sessions.create(session).await
    }

    async fn purge_expired_sessions(&self) -> StoreResult<u64> {
        // Session keys carry their expiry (EX): Redis drops them itself,
        // and each user's index is trimmed by expiry on every sign-in.
        Ok(0)
    }

    async fn session_user(&self, token_hash: [u8; 32]) -> StoreResult<Option<SessionUser>> {
        self.inner.sessions.user(token_hash).await
    }

    async fn revoke_session(&self, token_hash: [u8; 32]) -> StoreResult<bool> {
        self.inner.sessions.revoke(token_hash).await
    }

    async fn reserve_sign_in(
        &self,
        limits: &[AttemptLimit],
        window: Duration,
    ) -> StoreResult<Reservation> {
        self.inner.sessions.reserve_sign_in(limits, window).await
    }

    async fn release_sign_in(&self, release: &[&str], clear: &[&str]) -> StoreResult<()> {
        self.inner.sessions.release_sign_in(release, clear).await
    }

    async fn user_profile(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> StoreResult<Option<UserProfile>> {
        self.inner.db.user_profile(viewer, user).await
    }

    async fn my_profile(&self, me: UserId) -> StoreResult<Option<MyProfile>> {
        self.inner.db.my_profile(me).await
    }

    async fn set_follow(
        &self,
        follower: UserId,
        followee: UserId,
        on: bool,
    ) -> StoreResult<FollowState> {
        let state = self.inner.db.set_follow(follower, followee, on).await?;
        self.record_write(follower).await;
        // The follower's feed changed. Logged and counted inside; the
        // follow is committed either way.
        let _ = self.invalidate(&[follower.0]).await;
        if let Some(timelines) = &self.inner.timelines
            && let Err(e) = timelines.forget(follower).await
        {
            // Their timeline still shows the old follows until it expires.
            tracing::warn!(error = %e, user = follower.0, "timeline not dropped after a follow");
        }
        Ok(state)
    }

    async fn insert_photo(&self, photo: NewPhoto) -> StoreResult<Photo> {
        let ready = photo.status == PhotoStatus::Ready;
        let photo = self.inner.db.insert_photo(photo).await?;
        self.record_write(photo.user_id).await;
        // A queued photo is invisible until the worker has processed it;
        // the worker invalidates then. The photo is committed: a failed
        // invalidation must not turn its answer into an error (the client
        // would retry and post it twice); it is logged and counted.
        if ready && let Err(e) = self.photo_visible(photo.user_id, photo.id).await {
            tracing::warn!(error = %e, "feeds of a new photo not invalidated");
        }
        Ok(photo)
    }

    async fn photo(&self, viewer: Option<UserId>, photo: PhotoId) -> StoreResult<Option<Photo>> {
        self.inner.db.photo(viewer, photo).await
    }

    async fn set_like(&self, user: UserId, photo: PhotoId, on: bool) -> StoreResult<LikeState> {
        let state = self.inner.db.set_like(user, photo, on).await?;
        self.record_write(user).await;
        // The liker's cached pages show likedByMe and the count: drop them
        // so the liker's next read is fresh. Logged and counted inside; the
        // like is committed either way.
        let _ = self.invalidate(&[user.0]).await;
        Ok(state)
    }

    async fn session_feed(
        &self,
        token_hash: [u8; 32],
        page: PageQuery,
    ) -> StoreResult<Option<PhotoPage>> {
        if let (Some(one_trip), Some(cache), None) = (
            &self.inner.session_feed,
            &self.inner.cache,
            &self.inner.timelines,
        ) {
            match one_trip.read(token_hash, page).await {
                Ok(SessionPage::NoSession) => return Ok(None),
                Ok(SessionPage::Hit(_, cached)) => return Ok(Some(cached)),
                Ok(SessionPage::Miss(user, read)) => {
                    return cache.answer(user.user_id, page, read).await.map(Some);
                }
                // The sessions' Redis failing or busy: 503, as the session
                // lookup alone would answer.
                Err(e) => return Err(sessions::unavailable(e)),
            }
        }
        // No cache, the cache on its own server, or timelines: two steps.
        match self.session_user(token_hash).await? {
            Some(user) => self.feed(user.user_id, page).await.map(Some),
            None => Ok(None),
        }
    }

    async fn feed(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        if let Some(timelines) = &self.inner.timelines {
            return timelines.feed(viewer, page).await;
        }
        match &self.inner.cache {
            Some(cache) => cache.feed(viewer, page).await,
            None => self.inner.db.feed(viewer, page).await,
        }
    }

    async fn explore(&self, viewer: Option<UserId>, page: PageQuery) -> StoreResult<PhotoPage> {
        self.inner.db.explore(viewer, page).await
    }

    async fn user_photos(
        &self,
        viewer: Option<UserId>,
        owner: UserId,
        page: PageQuery,
    ) -> StoreResult<Option<PhotoPage>> {
        self.inner.db.user_photos(viewer, owner, page).await
    }

    async fn import(&self, data: Dataset) -> StoreResult<ImportSummary> {
        self.inner.db.import(data).await
    }

    fn figures(&self) -> Vec<Figure> {
        let mut all = figures::figures(&self.inner.db, &self.inner.redis, &self.inner.stats);
        if let Some(replicas) = self.inner.db.replicas() {
            all.extend(replicas.figures());
        }
        if let Some(timelines) = &self.inner.timelines {
            all.extend(timelines.figures());
        }
        all
    }

    type PhotoQueue = PhotoQueue;
    fn photo_queue(&self) -> Option<&PhotoQueue> {
        self.inner.queue.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::server_of;

    #[test]
    fn server_of_names_the_server_never_the_password() {
        assert_eq!(
            server_of("postgres://app:s3cret@db.internal:5432/minigram?sslmode=disable"),
            "db.internal:5432"
        );
        assert_eq!(server_of("redis://:hunter2@cache:6379/0"), "cache:6379");
        assert_eq!(server_of("redis://127.0.0.1"), "127.0.0.1");
        assert!(server_of("not a url").starts_with("an unreadable URL"));
        assert!(!server_of("postgres://u:pw@[::1]:5432/x").contains("pw"));
    }
}
