//! The cached feed in one round trip (part of the round-trip budget): a
//! feed read resolves its session and reads the cached first page in one
//! Redis script, instead of a session GET and then the page.
//!
//! Only when the feed cache lives on the same Redis as the sessions (no
//! `--cache-redis-url` of its own): a script runs on one server. A logout
//! keeps its immediate effect, since the script reads the session key at
//! the moment it runs, as the plain lookup did. A session that exists but
//! whose page is not cached goes on to the cache's usual path with the
//! user already known (one round trip fewer than before on a miss too).
//! The script touches a key it computes (the page of the session's user),
//! which a Redis Cluster would refuse; a single Redis, as here, does not.

use minigram::domain::{PageLimit, PageQuery};
use minigram::store::{PhotoPage, SessionUser};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Stage2Stats;
use super::redis_pool::{Keys, RedisPool};
use super::sessions::parse_session;

/// What the one round trip found.
pub enum SessionPage {
    /// The token is not (or no longer) a session.
    NoSession,
    /// The session's user and their cached first page.
    Hit(SessionUser, PhotoPage),
    /// The session's user; their page must be read the usual way.
    Miss(SessionUser),
}

pub struct SessionFeed {
    redis: RedisPool,
    keys: Keys,
    stats: Arc<Stage2Stats>,
    script: redis::Script,
}

const SESSION_AND_PAGE: &str = r"
local session = redis.call('GET', KEYS[1])
if not session then return false end
local user = string.match(session, '^(%d+):')
if not user then return {session, false} end
return {session, redis.call('HGET', ARGV[1] .. user, ARGV[2])}
";

impl SessionFeed {
    pub fn new(redis: RedisPool, keys: Keys, stats: Arc<Stage2Stats>) -> Self {
        Self {
            redis,
            keys,
            stats,
            script: redis::Script::new(SESSION_AND_PAGE),
        }
    }

    /// Whether `page` is one the cache keeps whole (the first page of the
    /// default size): only those can be answered in one round trip.
    pub fn serves(page: PageQuery) -> bool {
        page.before.is_none() && page.limit.get() == PageLimit::DEFAULT
    }

    /// The session of `token_hash` and, if cached, its user's first page.
    pub async fn read(&self, token_hash: [u8; 32], page: PageQuery) -> anyhow::Result<SessionPage> {
        let mut script = self.script.prepare_invoke();
        script
            .key(self.keys.of("session", hex::encode(token_hash)))
            .arg(self.keys.of("feedpage", ""))
            .arg(page.limit.get());
        let found: Option<(String, Option<String>)> = self.redis.script(&script).await?;
        let Some((session, cached)) = found else {
            return Ok(SessionPage::NoSession);
        };
        let Some(user) = parse_session(&session) else {
            return Ok(SessionPage::NoSession);
        };
        match cached.and_then(|json| serde_json::from_str(&json).ok()) {
            Some(page) => {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                self.stats.page_hits.fetch_add(1, Ordering::Relaxed);
                Ok(SessionPage::Hit(user, page))
            }
            None => Ok(SessionPage::Miss(user)),
        }
    }
}
