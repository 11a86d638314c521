//! Sessions and sign-in counters in the state Redis: what lets any
//! stage-2 process serve any user.
//!
//! A session is a key with the session's expiry, so a logout on one
//! process is seen by all at once, plus a member of its user's index (a
//! sorted set), which keeps at most `auth::MAX_SESSIONS_PER_USER` live
//! sessions per user. Sign-in attempts are reserved here too, so every
//! process counts the same failures (see `auth::Throttle`). Both are state,
//! not cache: their Redis runs with `noeviction`. When it cannot be
//! reached nobody's token can be checked: 503 `sessions_unavailable`.
//!
//! With read replicas, each user's **write position** lives here too: the
//! primary's WAL position after their last write ([`Sessions::wrote`]),
//! returned with their session in the same round trip, so whichever
//! process serves their next request raises its read floor to it
//! (`minigram::read_floor`, `replicas.rs`).

use minigram::auth::{AttemptLimit, Reservation};
use minigram::domain::{UserId, Username};
use minigram::store::{NewSession, SessionUser, StoreError, StoreResult};
use std::time::Duration;

/// How long a user's write position is kept. It must outlast the time
/// any replica in use takes to replay the write: a replica more than
/// `replica_max_lag` (10 s by default) behind is not read, and one within
/// it has replayed every write older than that, so a minute is ample.
pub const WRITE_POSITION_TTL: Duration = Duration::from_secs(60);

use super::redis_pool::{Keys, QueueFull, RedisPool};

/// A session key's value, `<user id>:<username>`.
pub(super) fn parse_session(value: &str) -> Option<SessionUser> {
    let (id, name) = value.split_once(':')?;
    Some(SessionUser {
        user_id: UserId(id.parse().ok()?),
        username: Username::from_trusted(name.to_owned()),
    })
}

pub struct Sessions {
    redis: RedisPool,
    keys: Keys,
    create: redis::Script,
    revoke: redis::Script,
    reserve: redis::Script,
    release: redis::Script,
    /// With read replicas: the session and its user's write position in
    /// one script; without, a plain GET.
    user_and_position: Option<redis::Script>,
    wrote: redis::Script,
}

/// A failure of the sessions' Redis as the app answers it: 503.
pub(super) fn unavailable(e: anyhow::Error) -> StoreError {
    if e.is::<QueueFull>() {
        StoreError::Overloaded
    } else {
        StoreError::SessionsUnavailable(e.context("session store (Redis)"))
    }
}

impl Sessions {
    /// `write_positions`: whether reads may go to replicas, so the
    /// session lookup also returns the user's write position.
    pub fn new(redis: RedisPool, keys: Keys, write_positions: bool) -> Self {
        Self {
            redis,
            keys,
            create: redis::Script::new(CREATE_SESSION),
            revoke: redis::Script::new(REVOKE_SESSION),
            reserve: redis::Script::new(RESERVE_SIGN_IN),
            release: redis::Script::new(RELEASE_SIGN_IN),
            user_and_position: write_positions.then(|| redis::Script::new(SESSION_AND_POSITION)),
            wrote: redis::Script::new(RECORD_WRITE_POSITION),
        }
    }

    /// Whether the state Redis answers (for `/ready`).
    pub async fn ping(&self) -> StoreResult<()> {
        self.session_redis::<String>(&redis::cmd("PING")).await?;
        Ok(())
    }

    pub async fn create(&self, session: NewSession) -> StoreResult<()> {
        let ttl = session.expires_at - minigram::app::now_secs();
        if ttl <= 0 {
            return Ok(()); // already expired: nothing to keep
        }
        let token = hex::encode(session.token_hash);
        let mut script = self.create.prepare_invoke();
        script
            .key(self.keys.of("session", &token))
            .key(self.keys.of("sessionsof", session.user.user_id.0))
            .arg(format!(
                "{}:{}",
                session.user.user_id.0, session.user.username
            ))
            .arg(ttl)
            .arg(&token)
            .arg(session.expires_at)
            .arg(minigram::app::now_secs())
            .arg(minigram::auth::MAX_SESSIONS_PER_USER)
            .arg(self.keys.of("session", ""));
        self.session_script::<()>(&script).await
    }

    /// The session's user; with replicas, the request's read floor is
    /// raised to the user's write position in the same round trip.
    pub async fn user(&self, token_hash: [u8; 32]) -> StoreResult<Option<SessionUser>> {
        let session_key = self.keys.of("session", hex::encode(token_hash));
        let Some(script) = &self.user_and_position else {
            let cmd = redis::cmd("GET").arg(session_key).clone();
            let value: Option<String> = self.session_redis(&cmd).await?;
            return Ok(value.as_deref().and_then(parse_session));
        };
        let mut script = script.prepare_invoke();
        script.key(session_key).arg(self.keys.of("wrote", ""));
        let found: Option<(String, u64)> = self.session_script(&script).await?;
        Ok(found.and_then(|(value, position)| {
            minigram::read_floor::raise(position);
            parse_session(&value)
        }))
    }

    /// Records that `user` wrote and the primary was at `position` after
    /// the commit (kept if larger than the one recorded), and raises this
    /// request's read floor to it.
    pub async fn wrote(&self, user: UserId, position: u64) -> StoreResult<()> {
        minigram::read_floor::raise(position);
        let mut script = self.wrote.prepare_invoke();
        script
            .key(self.keys.of("wrote", user.0))
            .arg(position)
            .arg(WRITE_POSITION_TTL.as_millis() as u64);
        self.session_script::<()>(&script).await
    }

    pub async fn revoke(&self, token_hash: [u8; 32]) -> StoreResult<bool> {
        let token = hex::encode(token_hash);
        let mut script = self.revoke.prepare_invoke();
        script
            .key(self.keys.of("session", &token))
            .arg(self.keys.of("sessionsof", ""))
            .arg(&token);
        let removed: i64 = self.session_script(&script).await?;
        Ok(removed > 0)
    }

    pub async fn reserve_sign_in(
        &self,
        limits: &[AttemptLimit],
        window: Duration,
    ) -> StoreResult<Reservation> {
        let mut script = self.reserve.prepare_invoke();
        for limit in limits {
            script.key(self.keys.of("loginfail", &limit.key));
        }
        script.arg(window.as_millis().max(1) as u64);
        for limit in limits {
            script.arg(limit.max);
        }
        let (locked, ttl_ms): (usize, i64) = self.session_script(&script).await?;
        Ok(match locked {
            0 => Reservation::Granted,
            i => Reservation::Locked {
                limit: i - 1,
                retry_after_secs: (ttl_ms.max(0) as u64).div_ceil(1000).max(1),
            },
        })
    }

    pub async fn release_sign_in(&self, release: &[&str], clear: &[&str]) -> StoreResult<()> {
        let mut script = self.release.prepare_invoke();
        for key in release.iter().chain(clear) {
            script.key(self.keys.of("loginfail", key));
        }
        script.arg(release.len());
        self.session_script::<()>(&script).await
    }

    /// Runs `cmd`; a full pool is `Overloaded`, any other failure
    /// `SessionsUnavailable` (nobody's token can be checked).
    async fn session_redis<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        self.redis.query(cmd).await.map_err(unavailable)
    }

    async fn session_script<T: redis::FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        self.redis.script(script).await.map_err(unavailable)
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

/// A session and its user's write position (KEYS: session; ARGV: the
/// write-position key prefix). Returns nil without a session, else
/// {value, position} (0 when the user wrote nothing lately). The user's
/// key is derived in the script, which is fine on one Redis server.
const SESSION_AND_POSITION: &str = r"
local value = redis.call('GET', KEYS[1])
if not value then return false end
local user = string.match(value, '^(%d+):')
local position = user and redis.call('GET', ARGV[1] .. user)
return {value, position or '0'}
";

/// Keeps the larger of the recorded and the new write position (KEYS: the
/// user's key; ARGV: position, lifetime in ms): two writes of one user
/// finishing out of order never lower it. Positions are below 2^53, which
/// Lua's numbers hold exactly.
const RECORD_WRITE_POSITION: &str = r"
local known = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) >= known then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
";
