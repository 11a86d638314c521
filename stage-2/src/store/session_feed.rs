//! The cached feed in one round trip (part of the round-trip budget): a
//! feed read resolves its session and reads what the feed cache holds for
//! its user in one Redis script, instead of a session GET and then the
//! cache.
//!
//! Only when the feed cache lives on the same Redis as the sessions (no
//! `--cache-redis-url` of its own): a script runs on one server. A logout
//! keeps its immediate effect, since the script reads the session key at
//! the moment it runs, as the plain lookup did. The cache part is the
//! cache's own read ([`feed_cache::READ_FEED_LUA`]): a cached first page
//! is the whole answer, read here (one round trip); otherwise the cache
//! goes on from what the script found (see
//! [`feed_cache::FeedCache::answer`]): any page within the cached id list
//! costs one Postgres statement more (two in all), a miss three.
//! The script touches keys it computes (those of the session's user),
//! which a Redis Cluster would refuse; a single Redis, as here, does not.

use minigram::domain::PageQuery;
use minigram::store::{PhotoPage, SessionUser};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Stage2Stats;
use super::feed_cache::{self, CacheRead, keeps_whole};
use super::redis_pool::{Keys, RedisPool};
use super::sessions::parse_session;

/// What the one round trip found.
pub enum SessionPage {
    /// The token is not (or no longer) a session.
    NoSession,
    /// The session's user and their cached first page: the whole answer.
    Hit(SessionUser, PhotoPage),
    /// The session's user and what else the cache holds for them, for
    /// [`feed_cache::FeedCache::answer`] to go on from.
    Miss(SessionUser, CacheRead),
}

pub struct SessionFeed {
    redis: RedisPool,
    keys: Keys,
    stats: Arc<Stage2Stats>,
    script: redis::Script,
}

/// KEYS: the session; ARGV: the key prefix (`<prefix>:`), the page size,
/// "1" if the page is one the cache keeps whole, the rebuild lock's
/// lifetime in ms. Returns nothing without a session,
/// else the session followed by what `read_feed` found for its user.
const SESSION_AND_FEED: &str = r"
local session = redis.call('GET', KEYS[1])
if not session then return {} end
local user = string.match(session, '^(%d+):')
if not user then return {session} end
local p = ARGV[1]
local found = read_feed(p .. 'feedpage:' .. user, p .. 'feedgen:' .. user,
  p .. 'feed:' .. user, p .. 'feedlock:' .. user, ARGV[2], ARGV[3], ARGV[4])
table.insert(found, 1, session)
return found
";

impl SessionFeed {
    pub fn new(redis: RedisPool, keys: Keys, stats: Arc<Stage2Stats>) -> Self {
        Self {
            redis,
            keys,
            stats,
            script: redis::Script::new(&format!(
                "{}\n{SESSION_AND_FEED}",
                feed_cache::READ_FEED_LUA
            )),
        }
    }

    /// The session of `token_hash` and what the cache holds for its user.
    pub async fn read(&self, token_hash: [u8; 32], page: PageQuery) -> anyhow::Result<SessionPage> {
        let mut script = self.script.prepare_invoke();
        script
            .key(self.keys.of("session", hex::encode(token_hash)))
            .arg(format!("{}:", self.keys.0))
            .arg(page.limit.get())
            .arg(u8::from(keeps_whole(page)))
            .arg(feed_cache::REBUILD_LOCK_MS);
        let found: Vec<String> = self.redis.script(&script).await?;
        let Some(user) = found.first().and_then(|session| parse_session(session)) else {
            return Ok(SessionPage::NoSession);
        };
        // The hot path reads its page here; anything else is the cache's.
        if let [_, kind, json] = found.as_slice()
            && kind == "page"
            && let Ok(page) = serde_json::from_str(json)
        {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            self.stats.page_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(SessionPage::Hit(user, page));
        }
        Ok(SessionPage::Miss(user, CacheRead::parse(&found[1..])?))
    }
}
