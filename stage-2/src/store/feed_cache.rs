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
//! - **Round trips** (stage 2's round-trip budget): what is cached for a
//!   viewer is read in one script ([`READ_FEED_LUA`]: the page, else the
//!   id list and generation, else the rebuild lock), with the session when
//!   the cache shares the sessions' Redis ([`super::session_feed`]). A
//!   cached page is then the answer; a miss adds one Postgres statement
//!   and one script that stores what it read ([`FeedCache::answer`]).
//! - **Faults:** a Redis that fails or whose pool is full is bypassed
//!   (counted): the read goes to Postgres.
//! - **Read replicas:** everything here reads the primary
//!   ([`Postgres::primary_feed`] says why): with the cache on, the cache is
//!   what scales feed reads, and replicas take the other reads.

use minigram::domain::{PageLimit, PageQuery, UserId};
use minigram::store::{Photo, PhotoPage, StoreResult};
use rand::Rng;
use sqlx::AssertSqlSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::postgres::{FEED_IDS, PHOTO_COLUMNS, PhotoRow, Postgres, before, fetch};
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
    read_feed: redis::Script,
    store_rebuilt: redis::Script,
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
            read_feed: redis::Script::new(&format!(
                "{READ_FEED_LUA}\nreturn read_feed(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])"
            )),
            store_rebuilt: redis::Script::new(STORE_REBUILT),
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

    /// What the cache holds for `viewer`, in one round trip (one script):
    /// their rendered first page when `page` is one the cache keeps whole,
    /// else their generation and id list, else the rebuild lock if free.
    async fn read(&self, viewer: UserId, page: PageQuery) -> anyhow::Result<CacheRead> {
        let mut script = self.read_feed.prepare_invoke();
        script
            .key(self.keys.of("feedpage", viewer.0))
            .key(self.keys.of("feedgen", viewer.0))
            .key(self.keys.of("feed", viewer.0))
            .key(self.keys.of("feedlock", viewer.0))
            .arg(page.limit.get())
            .arg(u8::from(keeps_whole(page)))
            .arg(REBUILD_LOCK_MS);
        let found: Vec<String> = self.redis.script(&script).await?;
        CacheRead::parse(&found)
    }

    /// Waits briefly for another reader's rebuild of the viewer's id list.
    /// `None`: it did not finish in time (or Redis failed): read Postgres.
    async fn wait_for_rebuild(&self, viewer: UserId) -> Option<Vec<i64>> {
        let get = redis::cmd("GET")
            .arg(self.keys.of("feed", viewer.0))
            .clone();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(Some(ids)) = self.redis.query::<Option<String>>(&get).await {
                self.stats.stampede_waits.fetch_add(1, Ordering::Relaxed);
                return Some(parse_ids(&ids));
            }
        }
        self.stats.cache_bypasses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Stores what a rebuild read (the id list, and the page when it is
    /// one the cache keeps whole) unless the feed was invalidated since
    /// `generation` was read, and releases the rebuild lock: one script.
    async fn store_rebuilt(
        &self,
        viewer: UserId,
        generation: &str,
        ids: Option<&[i64]>,
        page: Option<&PhotoPage>,
        limit: u32,
    ) {
        let ttl = self.ttl.as_secs().max(1) + rand::rng().random_range(0..=TTL_JITTER.as_secs());
        let (store_ids, ids) = match ids {
            Some(ids) => ("1", join_ids(ids)),
            None => ("0", String::new()),
        };
        let page = page
            .and_then(|page| serde_json::to_string(page).ok())
            .unwrap_or_default();
        let mut script = self.store_rebuilt.prepare_invoke();
        script
            .key(self.keys.of("feed", viewer.0))
            .key(self.keys.of("feedgen", viewer.0))
            .key(self.keys.of("feedlock", viewer.0))
            .key(self.keys.of("feedpage", viewer.0))
            .arg(generation)
            .arg(store_ids)
            .arg(ids)
            .arg(ttl)
            .arg(limit)
            .arg(page)
            .arg(self.page_ttl.as_millis().max(1) as u64);
        if let Err(e) = self.redis.script::<i64>(&script).await {
            tracing::debug!(error = %e, "could not store a rebuilt feed in the cache");
        }
    }

    /// Caches a hydrated first page, unless the feed was invalidated since
    /// `generation` was read.
    async fn store_first_page(
        &self,
        viewer: UserId,
        generation: &str,
        page: &PhotoPage,
        limit: u32,
    ) {
        let Ok(json) = serde_json::to_string(page) else {
            return;
        };
        let mut script = self.set_page_if_generation.prepare_invoke();
        script
            .key(self.keys.of("feedpage", viewer.0))
            .key(self.keys.of("feedgen", viewer.0))
            .arg(generation)
            .arg(limit)
            .arg(json)
            .arg(self.page_ttl.as_millis().max(1) as u64);
        if let Err(e) = self.redis.script::<i64>(&script).await {
            tracing::debug!(error = %e, "could not store a feed page in the cache");
        }
    }

    /// The feed through the cache: one round trip to read what is cached
    /// (see [`FeedCache::answer`] for what follows).
    pub async fn feed(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        match self.read(viewer, page).await {
            Ok(read) => self.answer(viewer, page, read).await,
            Err(e) => {
                self.stats.cache_bypasses.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "feed cache unavailable, reading Postgres");
                self.db.primary_feed(viewer, page).await
            }
        }
    }

    /// The page from what one cache read found (by [`FeedCache::feed`], or
    /// with the session by [`super::session_feed`]). The round trips that
    /// follow the read:
    /// - a cached page: none;
    /// - a cached id list: the page's photos from Postgres by id (one),
    ///   then the first page stored (one, when it is kept whole);
    /// - nothing cached, the rebuild lock taken: the id list and the
    ///   page's photos in one Postgres statement, then both stored and the
    ///   lock released in one script (one each);
    /// - another reader rebuilding: a few short waits for its id list,
    ///   then Postgres directly (the stampede path, not the budget's).
    pub async fn answer(
        &self,
        viewer: UserId,
        page: PageQuery,
        read: CacheRead,
    ) -> StoreResult<PhotoPage> {
        let stats = &self.stats;
        let (generation, ids) = match read {
            CacheRead::Page(cached) => {
                stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                stats.page_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(cached);
            }
            CacheRead::Ids { generation, ids } => {
                stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                (generation, ids)
            }
            CacheRead::Rebuild { generation } => {
                stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                return self.rebuild(viewer, page, &generation).await;
            }
            CacheRead::Unusable => {
                stats.cache_bypasses.fetch_add(1, Ordering::Relaxed);
                return self.db.primary_feed(viewer, page).await;
            }
            CacheRead::Wait { generation } => {
                stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                match self.wait_for_rebuild(viewer).await {
                    Some(ids) => (generation, ids),
                    None => return self.db.primary_feed(viewer, page).await,
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
            return self.db.primary_feed(viewer, page).await; // past the cached window
        }
        let result = PhotoPage::from_rows(self.hydrate(viewer, &wanted).await?, page);
        if keeps_whole(page) {
            self.store_first_page(viewer, &generation, &result, page.limit.get())
                .await;
        }
        Ok(result)
    }

    /// Nothing cached and this reader holds the rebuild lock: one statement
    /// reads the viewer's id window and the page's photos from it, one
    /// script stores both (the page if kept whole) and releases the lock.
    async fn rebuild(
        &self,
        viewer: UserId,
        page: PageQuery,
        generation: &str,
    ) -> StoreResult<PhotoPage> {
        let read = self.window_and_page(viewer, page).await;
        let (window, rows) = match read {
            Ok(found) => found,
            Err(e) => {
                self.store_rebuilt(viewer, generation, None, None, page.limit.get())
                    .await;
                return Err(e);
            }
        };
        let complete = window.as_ref().is_some_and(|w| w.len() < FEED_WINDOW);
        let past_window = !complete && rows.len() < fetch(page) as usize;
        let result = PhotoPage::from_rows(rows, page);
        let whole = (keeps_whole(page) && !past_window).then_some(&result);
        self.store_rebuilt(
            viewer,
            generation,
            window.as_deref(),
            whole,
            page.limit.get(),
        )
        .await;
        if past_window {
            return self.db.primary_feed(viewer, page).await;
        }
        Ok(result)
    }

    /// The viewer's newest [`FEED_WINDOW`] feed ids and the photos of
    /// `page` among them, in one statement. The window is `None` when the
    /// page had no rows and so could not carry it (a page past the newest).
    async fn window_and_page(
        &self,
        viewer: UserId,
        page: PageQuery,
    ) -> StoreResult<(Option<Vec<i64>>, Vec<Photo>)> {
        let rows = self
            .db
            .run(
                "reading a feed window",
                sqlx::query_as::<_, WindowRow>(AssertSqlSafe(format!(
                    "WITH win AS ({FEED_IDS})
                     SELECT {PHOTO_COLUMNS},
                            CASE WHEN row_number() OVER (ORDER BY p.id DESC) = 1
                                 THEN (SELECT array_agg(id ORDER BY id DESC) FROM win)
                            END AS feed_window
                     FROM photos p JOIN users u ON u.id = p.user_id
                     WHERE p.id IN (SELECT id FROM win WHERE id < $3 ORDER BY id DESC LIMIT $4)
                     ORDER BY p.id DESC"
                )))
                .bind(viewer.0)
                .bind(FEED_WINDOW as i64)
                .bind(before(page))
                .bind(fetch(page))
                .fetch_all(self.db.pool()),
            )
            .await?;
        let mut window = None;
        let mut photos = Vec::with_capacity(rows.len());
        for row in rows {
            if window.is_none() {
                window = row.feed_window;
            }
            photos.push(Photo::try_from(row.photo)?);
        }
        // No rows on a page from the newest means an empty feed.
        if window.is_none() && page.before.is_none() {
            window = Some(Vec::new());
        }
        Ok((window, photos))
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

/// How long a reader may hold a viewer's rebuild lock (it is released
/// when the rebuild is stored; this bounds a reader that died meanwhile).
pub(super) const REBUILD_LOCK_MS: u64 = 3000;

/// What the cache holds for a viewer, as a Lua function that both the
/// cache's own read and the session's one-trip read
/// ([`super::session_feed`]) call. Arguments: the keys of the viewer's
/// rendered pages, generation, id list and rebuild lock; the page size;
/// "1" if the page is one kept whole; the lock's lifetime in ms. Returns
/// `{"page", json}`, `{"ids", generation, ids}`, `{"rebuild", generation}`
/// (the lock is now this reader's) or `{"wait", generation}`.
pub(super) const READ_FEED_LUA: &str = r"
local function read_feed(page_key, gen_key, ids_key, lock_key, limit, whole, lock_ms)
  if whole == '1' then
    local page = redis.call('HGET', page_key, limit)
    if page then return {'page', page} end
  end
  local generation = redis.call('GET', gen_key) or ''
  local ids = redis.call('GET', ids_key)
  if ids then return {'ids', generation, ids} end
  if redis.call('SET', lock_key, '1', 'NX', 'PX', lock_ms) then
    return {'rebuild', generation}
  end
  return {'wait', generation}
end
";

/// Store a rebuilt feed's id list (if ARGV[2] is "1") and its page (if
/// ARGV[6] is not empty) only if no invalidation happened since the reader
/// read the generation, and always release the rebuild lock (KEYS: ids,
/// generation, lock, pages; ARGV: generation as read, "1" to store the
/// ids, ids, ttl in s, page size, page JSON or "", page ttl in ms).
const STORE_REBUILT: &str = r"
local current = redis.call('GET', KEYS[2]) or ''
if current == ARGV[1] then
  if ARGV[2] == '1' then
    redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  end
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])
    redis.call('PEXPIRE', KEYS[4], ARGV[7])
  end
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

/// What one read of the cache found for a viewer (see [`READ_FEED_LUA`]).
pub enum CacheRead {
    /// Their rendered page, as cached.
    Page(PhotoPage),
    /// Their feed's id window and the generation it was read at.
    Ids { generation: String, ids: Vec<i64> },
    /// Nothing cached; this reader holds the rebuild lock.
    Rebuild { generation: String },
    /// Nothing cached; another reader is rebuilding.
    Wait { generation: String },
    /// A cached page that no longer parses (written by another version):
    /// read Postgres this time; the next change or its TTL replaces it.
    Unusable,
}

impl CacheRead {
    /// Reads the script's answer (`found`, without anything a caller put
    /// before it). A cached page that no longer parses is read as missing.
    pub fn parse(found: &[String]) -> anyhow::Result<Self> {
        let field = |i: usize| found.get(i).cloned().unwrap_or_default();
        Ok(match found.first().map(String::as_str) {
            Some("page") => match serde_json::from_str(&field(1)) {
                Ok(page) => Self::Page(page),
                Err(_) => Self::Unusable,
            },
            Some("ids") => Self::Ids {
                generation: field(1),
                ids: parse_ids(&field(2)),
            },
            Some("rebuild") => Self::Rebuild {
                generation: field(1),
            },
            Some("wait") => Self::Wait {
                generation: field(1),
            },
            other => anyhow::bail!("unexpected feed cache answer {other:?}"),
        })
    }
}

/// Whether `page` is one the cache keeps whole (the first page of the
/// default size): a client choosing `limit` 1..=100 must not make up to a
/// hundred cached pages per viewer, so other sizes come from the id list.
pub fn keeps_whole(page: PageQuery) -> bool {
    page.before.is_none() && page.limit.get() == PageLimit::DEFAULT
}

/// One row of [`FeedCache::window_and_page`]: a photo of the page, the
/// first row also carrying the viewer's whole id window.
#[derive(sqlx::FromRow)]
struct WindowRow {
    #[sqlx(flatten)]
    photo: PhotoRow,
    feed_window: Option<Vec<i64>>,
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn parse_ids(s: &str) -> Vec<i64> {
    s.split(',').filter_map(|x| x.parse().ok()).collect()
}
