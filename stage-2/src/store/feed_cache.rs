//! The feed cache (cache-aside, `--feed-cache on`): what the cache
//! experiment adds to stage 2. Without this file, every feed page is one
//! Postgres query ([`Postgres::feed`]).
//!
//! - **What is cached.** For each viewer, the ids of the newest
//!   [`FEED_WINDOW`] photos of their feed, and the first page of the
//!   default size (20) as rendered JSON. A page from the id list is
//!   "hydrated" from Postgres by primary key, so like counts and "liked by
//!   me" are fresh; a rendered first page lives only
//!   [`Stage2Config::feed_page_ttl`] (10 s): others' likes may take that
//!   long to show on it. Pages of other sizes are never stored whole: a
//!   client choosing `limit` must not multiply what is cached per viewer.
//! - **Invalidation** ([`FeedCache::invalidate`]) happens in the request
//!   that made the change, after its commit and before its answer: a new
//!   photo drops the feeds of its owner and every follower, a follow or
//!   unfollow the follower's, a like the liker's (its first page carries
//!   "liked by me"). Each is one atomic step (MULTI/EXEC) that also bumps
//!   each viewer's generation.
//! - **Races.** A reader that missed records the viewer's generation
//!   before querying Postgres and stores its result only if the generation
//!   is unchanged (one Lua script): an invalidation that lands while the
//!   reader queries is never overwritten by stale data.
//! - **Staleness others may see:** none in normal operation. If Redis is
//!   unreachable when a change is invalidated (the change itself is
//!   committed), feeds cached before may show the old list until their TTL
//!   ([`Stage2Config::feed_cache_ttl`], 60 s, plus up to [`TTL_JITTER`])
//!   runs out; the photo worker retries its invalidations for that long.
//! - **Stampedes:** when a feed key is missing, one reader per viewer takes
//!   a short Redis lock and rebuilds it; the others wait up to ~100 ms for
//!   its result and then read Postgres directly rather than pile up. TTLs
//!   get random jitter so keys made together do not expire together.
//! - **Faults:** a Redis that fails or whose pool is full is bypassed
//!   (counted): the read goes to Postgres.

use minigram::domain::{PageLimit, PageQuery, UserId};
use minigram::store::{Photo, PhotoPage, StoreResult};
use rand::Rng;
use sqlx::AssertSqlSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::postgres::{PHOTO_COLUMNS, PhotoRow, Postgres, before, fetch};
use super::redis_pool::{Keys, RedisPool};
use super::{Stage2Config, Stage2Stats};

/// How many of a viewer's newest feed photo ids the cache keeps. Pages
/// beyond it are read from Postgres.
pub const FEED_WINDOW: usize = 200;

/// The most random time added to a cached feed's TTL (so keys made
/// together do not expire together).
pub const TTL_JITTER: Duration = Duration::from_secs(10);

/// The cache on its Redis (the state Redis unless `--cache-redis-url`),
/// with the Postgres it rebuilds from.
pub struct FeedCache {
    redis: RedisPool,
    db: Postgres,
    keys: Keys,
    ttl: Duration,
    page_ttl: Duration,
    stats: Arc<Stage2Stats>,
    set_if_generation: redis::Script,
    set_page_if_generation: redis::Script,
}

impl FeedCache {
    pub fn new(
        config: &Stage2Config,
        redis: RedisPool,
        db: Postgres,
        stats: Arc<Stage2Stats>,
    ) -> Self {
        Self {
            redis,
            db,
            keys: Keys(config.redis_prefix.clone()),
            ttl: config.feed_cache_ttl,
            page_ttl: config.feed_page_ttl,
            stats,
            set_if_generation: redis::Script::new(SET_IF_GENERATION),
            set_page_if_generation: redis::Script::new(SET_PAGE_IF_GENERATION),
        }
    }

    /// Drops the cached feeds of `viewers`, as one atomic step (MULTI/EXEC):
    /// a reader never sees a viewer's new generation beside the old id
    /// list, so it cannot store a page built from that list under the new
    /// generation. A failure is logged and counted, and returned: the
    /// change itself is committed; see the module docs for the staleness
    /// this allows.
    pub async fn invalidate(&self, viewers: &[i64]) -> anyhow::Result<()> {
        if viewers.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for v in viewers {
            let generation = self.keys.of("feedgen", v);
            pipe.cmd("INCR").arg(&generation).ignore();
            pipe.cmd("EXPIRE").arg(&generation).arg(86_400).ignore();
            pipe.cmd("DEL")
                .arg(self.keys.of("feed", v))
                .arg(self.keys.of("feedpage", v))
                .ignore();
        }
        if let Err(e) = self.redis.pipe::<()>(&pipe).await {
            self.stats.cache_bypasses.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, viewers = viewers.len(), "feed cache invalidation failed");
            return Err(e);
        }
        Ok(())
    }

    /// The viewer's cached first page for `limit`: one command, the hot path.
    async fn read_first_page(&self, viewer: UserId, limit: u32) -> anyhow::Result<Option<String>> {
        let cmd = redis::cmd("HGET")
            .arg(self.keys.of("feedpage", viewer.0))
            .arg(limit)
            .clone();
        self.redis.query(&cmd).await
    }

    /// The viewer's feed generation and cached id list, in one round trip.
    async fn read_feed_ids(&self, viewer: UserId) -> anyhow::Result<CacheRead> {
        let cmd = redis::cmd("MGET")
            .arg(self.keys.of("feedgen", viewer.0))
            .arg(self.keys.of("feed", viewer.0))
            .clone();
        let (generation, ids): (Option<String>, Option<String>) = self.redis.query(&cmd).await?;
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
        let stats = &self.stats;
        let (feed_key, gen_key) = (
            self.keys.of("feed", viewer.0),
            self.keys.of("feedgen", viewer.0),
        );
        let lock_key = self.keys.of("feedlock", viewer.0);
        let lock = redis::cmd("SET")
            .arg(&lock_key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(3000)
            .clone();
        let got_lock: Option<String> = self.redis.query(&lock).await.unwrap_or(None);
        if got_lock.is_none() {
            // Someone else is rebuilding this feed: wait briefly for it.
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let get = redis::cmd("GET").arg(&feed_key).clone();
                if let Ok(Some(ids)) = self.redis.query::<Option<String>>(&get).await {
                    stats.stampede_waits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(parse_ids(&ids)));
                }
            }
            stats.cache_bypasses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let ids = self.feed_ids(viewer).await?;
        let ttl = self.ttl.as_secs().max(1) + rand::rng().random_range(0..=TTL_JITTER.as_secs());
        let joined = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let mut script = self.set_if_generation.prepare_invoke();
        script
            .key(&feed_key)
            .key(&gen_key)
            .key(&lock_key)
            .arg(generation.clone().unwrap_or_default())
            .arg(joined)
            .arg(ttl);
        if let Err(e) = self.redis.script::<i64>(&script).await {
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
        let mut script = self.set_page_if_generation.prepare_invoke();
        script
            .key(self.keys.of("feedpage", viewer.0))
            .key(self.keys.of("feedgen", viewer.0))
            .arg(generation.clone().unwrap_or_default())
            .arg(limit)
            .arg(json)
            .arg(self.page_ttl.as_millis().max(1) as u64);
        if let Err(e) = self.redis.script::<i64>(&script).await {
            tracing::debug!(error = %e, "could not store a feed page in the cache");
        }
    }

    /// The feed through the cache: the first page as cached (hot path), or
    /// the cached id list hydrated from Postgres.
    pub async fn feed(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        self.feed_from(viewer, page, true).await
    }

    /// The feed when its cached first page was just found missing (by
    /// [`super::session_feed`]): straight to the id list.
    pub async fn feed_past_page(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        self.feed_from(viewer, page, false).await
    }

    async fn feed_from(
        &self,
        viewer: UserId,
        page: PageQuery,
        read_page: bool,
    ) -> StoreResult<PhotoPage> {
        let stats = &self.stats;
        // Only the page size clients get by default is kept as a rendered
        // page: a client choosing `limit` 1..=100 must not make up to a
        // hundred cached pages per viewer. Other sizes come from the id list.
        let first = page.before.is_none() && page.limit.get() == PageLimit::DEFAULT;
        let bypass = |e: anyhow::Error| {
            stats.cache_bypasses.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "feed cache unavailable, reading Postgres");
        };
        if first && read_page {
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
                    return self.db.feed(viewer, page).await;
                }
            }
        }
        let read = match self.read_feed_ids(viewer).await {
            Ok(read) => read,
            Err(e) => {
                bypass(e);
                return self.db.feed(viewer, page).await;
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
                    None => return self.db.feed(viewer, page).await,
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
            return self.db.feed(viewer, page).await; // past the cached window
        }
        let result = PhotoPage::from_rows(self.hydrate(viewer, &wanted).await?, page);
        if first {
            self.store_first_page(viewer, page.limit.get(), &read.generation, &result)
                .await;
        }
        Ok(result)
    }

    /// The newest `window` photo ids of `viewer`'s feed (what the feed
    /// cache keeps).
    async fn feed_ids(&self, viewer: UserId) -> StoreResult<Vec<i64>> {
        self.db
            .run(
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
                .fetch_all(self.db.pool()),
            )
            .await
    }

    /// Full photo rows for `ids`, newest first, as `viewer` sees them.
    async fn hydrate(&self, viewer: UserId, ids: &[i64]) -> StoreResult<Vec<Photo>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .db
            .run(
                "reading feed photos",
                sqlx::query_as::<_, PhotoRow>(AssertSqlSafe(format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
                     WHERE p.id = ANY($2) ORDER BY p.id DESC"
                )))
                .bind(viewer.0)
                .bind(ids)
                .fetch_all(self.db.pool()),
            )
            .await?;
        rows.into_iter().map(Photo::try_from).collect()
    }
}

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
