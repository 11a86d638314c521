//! Timelines (`--feed-strategy push|hybrid`): fan-out-on-write. Without
//! them (`pull`, the default) a feed page is a query over everyone the
//! reader follows, at read time.
//!
//! With `push`, each person's feed is a precomputed **timeline**: a capped
//! Redis sorted set of photo ids (score = id, newest first) in the state
//! Redis. A photo that becomes visible is *announced* — one XADD on a
//! Redis Stream, all the upload waits for — and background fan-out
//! workers in every process ([`crate::fanout`]) consume the stream with a
//! consumer group (XREADGROUP, XACK; entries of a crashed worker are
//! reclaimed with XAUTOCLAIM) and add the id to the timeline of the owner
//! and of each follower. A feed read is then one Redis round trip for the
//! ids and one Postgres query that hydrates them (counts, likedByMe).
//!
//! With `hybrid`, accounts with more than `--celebrity-followers` followers
//! are not fanned out (one post would write thousands of timelines):
//! their ids go into a `celebrities` set instead, and a feed read merges
//! in the recent photos of the celebrities the reader follows, in the same
//! hydrating query.
//!
//! Postgres stays the record. A timeline is used only if it was **built**
//! (a sentinel member `built`, scored +inf, so no page range ever returns
//! it): fan-out writes to every follower's set, built or not, and a set
//! without the sentinel (never read, expired, lost with Redis) is built
//! again from Postgres on its reader's next feed — the union of both is
//! right whatever their order. A timeline holds the newest [`Timelines::cap`]
//! ids; a page past its oldest is read from Postgres. A follow or unfollow
//! drops the follower's timeline (rebuilt on their next read), so it never
//! shows someone no longer followed. Every timeline expires
//! [`Timelines::ttl`] after it was built: what a lost announcement (Redis
//! unreachable after the photo committed) can hide, it hides for at most
//! that long.

use minigram::domain::{PageQuery, PhotoId, UserId};
use minigram::store::{PhotoPage, StoreError, StoreResult};
use minigram::telemetry::Figure;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::Stage2Config;
use super::postgres::{Postgres, before, fetch, now_ms};
use super::redis_pool::{Keys, RedisPool};

/// How a feed page is made (`--feed-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeedStrategy {
    /// A query over the people followed, at read time (fan-out-on-read).
    Pull,
    /// Precomputed timelines, written by fan-out workers.
    Push,
    /// Push, except for accounts with many followers, merged at read time.
    Hybrid,
}

/// The consumer group every process's fan-out workers share.
pub const GROUP: &str = "fanout";

/// Reads one page of a built timeline (nil if it is not built): the ids
/// below the cursor, how many ids it holds, and the celebrities.
const READ: &str = r"
if not redis.call('ZSCORE', KEYS[1], 'built') then return false end
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '-inf', 'LIMIT', 0, ARGV[2])
return {ids, redis.call('ZCARD', KEYS[1]) - 1, redis.call('SMEMBERS', KEYS[2])}
";

/// Builds a timeline from ids read from Postgres (added to whatever
/// fan-out already wrote there), marks it built, trims and dates it;
/// returns the celebrities.
const BUILD: &str = r"
redis.call('ZADD', KEYS[1], '+inf', 'built')
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i]) end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return redis.call('SMEMBERS', KEYS[2])
";

/// Adds one photo id to many timelines (KEYS[2..]), each trimmed to the
/// cap and given a life if it has none; KEYS[1] is the celebrities set,
/// from which the owner (ARGV[4]) is removed when ARGV[5] is 1 (they have
/// fallen under the threshold and are fanned out again).
const FAN_OUT: &str = r"
if ARGV[5] == '1' then redis.call('SREM', KEYS[1], ARGV[4]) end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2], 'NX')
  redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(tonumber(ARGV[3]) + 2))
end
return #KEYS - 1
";

/// Announces a photo (XADD on the stream KEYS[1]) and puts it at once in
/// its owner's own timeline KEYS[2], in one round trip: the poster sees
/// their photo in their feed at once; their followers, after fan-out.
/// ARGV: photo, owner, now (ms), ttl, cap.
const ANNOUNCE: &str = r"
redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000000, '*',
           'photo', ARGV[1], 'owner', ARGV[2], 'at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4], 'NX')
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[5]) + 2))
return 1
";

/// Timelines written by one script call at most: Redis runs a script
/// alone, so a celebrity's thousands of followers are written in slices
/// that let other commands in between.
const FAN_OUT_SLICE: usize = 500;

pub struct Timelines {
    redis: RedisPool,
    db: Postgres,
    keys: Keys,
    stream: String,
    celebrities: String,
    pub strategy: FeedStrategy,
    /// Hybrid: owners with more followers than this are not fanned out.
    celebrity_followers: usize,
    /// Ids a timeline keeps (the newest).
    pub cap: usize,
    /// A timeline's life from when it was built.
    pub ttl: Duration,
    /// An entry delivered to a worker and not acknowledged for this long
    /// is taken over by another (its worker died).
    pub claim_after: Duration,
    announce_script: redis::Script,
    read_script: redis::Script,
    build_script: redis::Script,
    fan_out_script: redis::Script,
    stats: TimelineStats,
}

/// What the fan-out did, for the figures.
#[derive(Debug, Default)]
struct TimelineStats {
    /// Entries announced but not yet fanned out (undelivered + pending),
    /// as last read by a worker of this process.
    backlog: AtomicI64,
    /// Commit-to-every-timeline time of the last entry fanned out (ms).
    lag_ms: AtomicU64,
    /// Timelines written by fan-out.
    written: AtomicU64,
    /// Entries fanned out, and those skipped as a celebrity's.
    fanned_out: AtomicU64,
    celebrity_posts: AtomicU64,
    /// Timelines built from Postgres on a read.
    built: AtomicU64,
    /// Pages past a full timeline's oldest id, read from Postgres.
    past_end: AtomicU64,
    /// Announcements that failed (the photo is committed; built timelines
    /// miss it until rebuilt).
    lost: AtomicU64,
    /// Fan-out workers' time (ms) looking up followers in Postgres, and
    /// running the timeline scripts in Redis: together, how busy the
    /// workers are (1000 ms a second = one worker never idle).
    followers_ms: AtomicU64,
    write_ms: AtomicU64,
}

/// One announced photo, as a fan-out worker reads it from the stream.
#[derive(Debug, Clone, Copy)]
pub struct Announced {
    pub photo: i64,
    pub owner: i64,
    /// When it was announced (ms since the epoch), for the fan-out lag.
    pub at_ms: i64,
}

impl Timelines {
    pub fn new(config: &Stage2Config, redis: RedisPool, db: Postgres) -> Option<Self> {
        let keys = Keys(config.redis_prefix.clone());
        (config.feed_strategy != FeedStrategy::Pull).then(|| Self {
            stream: keys.of("fanout", "stream"),
            celebrities: keys.of("fanout", "celebrities"),
            keys,
            redis,
            db,
            strategy: config.feed_strategy,
            celebrity_followers: config.celebrity_followers,
            cap: config.timeline_cap,
            ttl: config.timeline_ttl,
            claim_after: config.fanout_claim_after,
            announce_script: redis::Script::new(ANNOUNCE),
            read_script: redis::Script::new(READ),
            build_script: redis::Script::new(BUILD),
            fan_out_script: redis::Script::new(FAN_OUT),
            stats: TimelineStats::default(),
        })
    }

    /// The state Redis, which holds the stream and the timelines.
    pub fn redis(&self) -> &RedisPool {
        &self.redis
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn timeline(&self, user: i64) -> String {
        self.keys.of("timeline", user)
    }

    /// A photo of `owner` became visible: one script (XADD, and the
    /// owner's own timeline), all its upload waits for. A failure is logged
    /// and counted, not answered (the photo is committed): built timelines
    /// miss it until they are rebuilt.
    pub async fn announce(&self, owner: UserId, photo: PhotoId) {
        let mut call = self.announce_script.prepare_invoke();
        // The stream is capped (MAXLEN ~) only against one nobody consumes.
        call.key(&self.stream)
            .key(self.timeline(owner.0))
            .arg(photo.0)
            .arg(owner.0)
            .arg(now_ms())
            .arg(self.ttl.as_secs().max(1))
            .arg(self.cap);
        if let Err(e) = self.redis.script::<i64>(&call).await {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(photo = photo.0, error = %e, "photo not announced to timelines");
        }
    }

    /// `user` followed or unfollowed someone: their timeline is wrong now;
    /// drop it (rebuilt from Postgres on their next feed read).
    pub async fn forget(&self, user: UserId) -> StoreResult<()> {
        self.redis
            .query::<i64>(redis::cmd("DEL").arg(self.timeline(user.0)))
            .await
            .map(drop)
            .map_err(StoreError::Unavailable)
    }

    /// A feed page from the viewer's timeline: one Redis round trip and
    /// one Postgres query; two more (the ids from Postgres, the build) when
    /// the timeline is not built.
    pub async fn feed(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        let key = self.timeline(viewer.0);
        let mut read = self.read_script.prepare_invoke();
        read.key(&key)
            .key(&self.celebrities)
            .arg(before(page))
            .arg(fetch(page));
        let read: Option<(Vec<i64>, i64, Vec<i64>)> = self
            .redis
            .script(&read)
            .await
            .map_err(StoreError::Unavailable)?;
        let (ids, held, celebrities) = match read {
            Some(found) => found,
            None => {
                let ids = self.db.feed_ids(viewer, self.cap as i64).await?;
                let mut build = self.build_script.prepare_invoke();
                build
                    .key(&key)
                    .key(&self.celebrities)
                    .arg(self.ttl.as_secs().max(1))
                    .arg(self.cap);
                for id in &ids {
                    build.arg(id);
                }
                let celebrities: Vec<i64> = self
                    .redis
                    .script(&build)
                    .await
                    .map_err(StoreError::Unavailable)?;
                self.stats.built.fetch_add(1, Ordering::Relaxed);
                let held = ids.len() as i64;
                let below = before(page);
                let ids = ids
                    .into_iter()
                    .filter(|id| *id < below)
                    .take(fetch(page) as usize)
                    .collect();
                (ids, held, celebrities)
            }
        };
        // A full timeline ends at its cap, not at the feed's first photo:
        // a page that runs past its oldest id is the query's.
        if held >= self.cap as i64 && (ids.len() as i64) < fetch(page) {
            self.stats.past_end.fetch_add(1, Ordering::Relaxed);
            return self.db.feed(viewer, page).await;
        }
        let celebrities = match self.strategy {
            FeedStrategy::Hybrid => celebrities,
            _ => Vec::new(),
        };
        self.db
            .timeline_page(viewer, &ids, &celebrities, page)
            .await
    }

    /// Adds one announced photo to the timelines of its owner and of their
    /// followers (hybrid: not if the owner has more followers than the
    /// threshold; they are recorded as a celebrity instead). Idempotent:
    /// an entry fanned out twice (its worker died before XACK) writes the
    /// same ids again.
    pub async fn fan_out(&self, entry: Announced) -> anyhow::Result<()> {
        let looked_up = std::time::Instant::now();
        let most = (self.strategy == FeedStrategy::Hybrid)
            .then(|| self.celebrity_followers.saturating_add(1));
        let followers = self.db.followers(UserId(entry.owner), most).await?;
        add_ms(&self.stats.followers_ms, looked_up);
        let writing = std::time::Instant::now();
        if self.strategy == FeedStrategy::Hybrid && followers.len() > self.celebrity_followers {
            let mut add = redis::cmd("SADD");
            add.arg(&self.celebrities).arg(entry.owner);
            self.redis.query::<i64>(&add).await?;
            // The owner's own timeline still gets it (one write).
            self.write(entry, &[entry.owner], false).await?;
            self.stats.celebrity_posts.fetch_add(1, Ordering::Relaxed);
        } else {
            let mut all = followers;
            all.push(entry.owner);
            for slice in all.chunks(FAN_OUT_SLICE) {
                self.write(entry, slice, true).await?;
            }
            self.stats.fanned_out.fetch_add(1, Ordering::Relaxed);
        }
        add_ms(&self.stats.write_ms, writing);
        let lag = (now_ms() - entry.at_ms).max(0) as u64;
        self.stats.lag_ms.store(lag, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `entry` into the timelines of `users`; `fanned_out`: the
    /// owner is not (or no longer) a celebrity.
    async fn write(&self, entry: Announced, users: &[i64], fanned_out: bool) -> anyhow::Result<()> {
        let mut call = self.fan_out_script.prepare_invoke();
        call.key(&self.celebrities);
        for user in users {
            call.key(self.timeline(*user));
        }
        call.arg(entry.photo)
            .arg(self.ttl.as_secs().max(1))
            .arg(self.cap)
            .arg(entry.owner)
            .arg(u8::from(fanned_out));
        let written: i64 = self.redis.script(&call).await?;
        self.stats
            .written
            .fetch_add(written as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Records the backlog a worker read (XINFO GROUPS: lag + pending).
    pub fn set_backlog(&self, entries: i64) {
        self.stats.backlog.store(entries, Ordering::Relaxed);
    }

    pub fn figures(&self) -> Vec<Figure> {
        use minigram::figure_keys as keys;
        let st = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut out = vec![
            Figure::gauge(
                keys::FANOUT_BACKLOG,
                "Photos announced, not yet in every timeline",
                "minigram_fanout_backlog",
                st.backlog.load(Ordering::Relaxed) as f64,
            ),
            Figure::gauge(
                keys::FANOUT_LAG_MS,
                "Fan-out lag of the last photo (announced → in every timeline), ms",
                "minigram_fanout_lag_milliseconds",
                load(&st.lag_ms),
            ),
        ];
        let counters = [
            (
                keys::FANOUT_WRITES,
                "Timelines written by fan-out",
                "minigram_fanout_timeline_writes_total",
                &st.written,
            ),
            (
                keys::FANOUT_PHOTOS,
                "Photos fanned out",
                "minigram_fanout_photos_total",
                &st.fanned_out,
            ),
            (
                keys::FANOUT_CELEBRITY_POSTS,
                "Photos of celebrities, merged at read time instead",
                "minigram_fanout_celebrity_photos_total",
                &st.celebrity_posts,
            ),
            (
                keys::TIMELINES_BUILT,
                "Timelines built from Postgres on a read",
                "minigram_timelines_built_total",
                &st.built,
            ),
            (
                keys::TIMELINES_PAST_END,
                "Feed pages past a full timeline, read from Postgres",
                "minigram_timelines_past_end_total",
                &st.past_end,
            ),
            (
                keys::FANOUT_FOLLOWERS_MS,
                "Fan-out time looking up followers in Postgres, ms",
                "minigram_fanout_followers_milliseconds_total",
                &st.followers_ms,
            ),
            (
                keys::FANOUT_WRITE_MS,
                "Fan-out time writing timelines in Redis, ms",
                "minigram_fanout_write_milliseconds_total",
                &st.write_ms,
            ),
            (
                keys::FANOUT_LOST,
                "Announcements that failed (built timelines miss them until rebuilt)",
                "minigram_fanout_lost_total",
                &st.lost,
            ),
        ];
        for (key, title, metric, count) in counters {
            out.push(Figure::counter(key, title, metric, load(count)));
        }
        out
    }
}

/// Adds the milliseconds since `since` to a time counter.
fn add_ms(counter: &AtomicU64, since: std::time::Instant) {
    counter.fetch_add(since.elapsed().as_millis() as u64, Ordering::Relaxed);
}

/// An entry of the stream as an [`Announced`] (None if malformed: it is
/// acknowledged and dropped, it can never be fanned out).
pub fn parse(entry: &redis::streams::StreamId) -> Option<Announced> {
    Some(Announced {
        photo: entry.get::<i64>("photo")?,
        owner: entry.get::<i64>("owner")?,
        at_ms: entry.get::<i64>("at")?,
    })
}
