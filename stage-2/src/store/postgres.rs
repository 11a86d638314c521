//! The Postgres store: the record of users, photos, follows and likes,
//! behind a bounded pool.
//!
//! Every query goes through [`Postgres::run`] (or [`Postgres::timed`] when
//! the caller reads a database error itself): at most `pg_pool_size +
//! pool_queue_max` calls hold or wait for a connection, one more is
//! refused at once (503 `overloaded`); each is timed as `db` in
//! Server-Timing; a lost connection, a pool timeout or a server shutting
//! down is `Unavailable` (503), anything else `Unexpected` (500).
//!
//! Reads that may be a little old (explore, profiles, photos, the feed
//! without the cache) go through [`Postgres::read`], which sends them to a
//! read replica when there are any (`replicas.rs` says which and when);
//! everything else reads and writes the primary.
//!
//! This file knows nothing of Redis: the feed cache and the photo queue
//! call the queries they need, and the store's `mod.rs` invalidates the
//! cache after the writes here.

use anyhow::Context;
use minigram::domain::{Email, PageQuery, PhotoId, UserId, Username};
use minigram::store::{
    Credentials, Dataset, FollowState, ImportSummary, Integrity, LikeState, MyProfile, NewPhoto,
    NewUser, Photo, PhotoPage, PhotoStatus, StoreError, StoreResult, UserProfile,
};
use minigram::timing::{self, Phase, Remote};
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Postgres as Pg};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::replicas::{Replicas, parse_lsn};
use super::{InFlight, Stage2Config, Stage2Stats, server_of};

/// The Postgres pool and its gate, and the read replicas if any. Cheap to
/// clone.
#[derive(Clone)]
pub struct Postgres {
    pool: PgPool,
    /// Calls that may hold or wait for a connection at once.
    limit: i64,
    replicas: Option<Arc<Replicas>>,
    stats: Arc<Stage2Stats>,
}

impl Postgres {
    /// Connects (creating the database if missing, running migrations);
    /// fails with a message naming the server that could not be reached.
    pub async fn connect(config: &Stage2Config, stats: Arc<Stage2Stats>) -> anyhow::Result<Self> {
        let pg_server = server_of(&config.database_url);
        let exists = Pg::database_exists(&config.database_url)
            .await
            .with_context(|| {
                format!(
                    "cannot reach Postgres at {pg_server} (--database-url / DATABASE_URL): \
                     start it (e.g. `docker compose up -d postgres`) or point to another server"
                )
            })?;
        if !exists {
            Pg::create_database(&config.database_url)
                .await
                .with_context(|| {
                    format!("cannot create the database of {}", config.database_url)
                })?;
        }
        let ping_idle_after = config.pg_ping_idle_after;
        let pg = PgPoolOptions::new()
            .max_connections(config.pg_pool_size.max(1))
            .acquire_timeout(config.acquire_timeout)
            // sqlx's default pings every connection as it leaves the pool,
            // a round trip before every statement; it already pings each
            // as it returns (off the request's path). So only a connection
            // idle for a while is checked before use (sqlx's own example
            // of this hook): under load a statement is one round trip, and
            // after a quiet spell a connection a restarted server dropped
            // is still found before a request uses it.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > ping_idle_after {
                        timing::round_trips(Remote::Postgres, 1);
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(&config.database_url)
            .await
            .with_context(|| format!("cannot connect to Postgres at {pg_server}"))?;
        sqlx::migrate!("./migrations")
            .run(&pg)
            .await
            .context("running the Postgres migrations")?;

        let replicas = Replicas::new(config)?;
        if let Some(replicas) = &replicas {
            replicas.start_poller(pg.clone(), config.replica_poll);
        }
        Ok(Self {
            pool: pg,
            limit: i64::from(config.pg_pool_size.max(1)) + i64::from(config.pool_queue_max),
            replicas,
            stats,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn replicas(&self) -> Option<&Replicas> {
        self.replicas.as_deref()
    }

    /// A read that may be served by a replica: one whose replayed position
    /// has reached this request's read floor (the reader's own last write),
    /// else the primary. A read that fails on a replica for want of the
    /// replica (down, unreachable, or cancelled by replay) takes the
    /// replica out of service and is retried on the primary, so a replica
    /// lost under load costs time, not an error. `step` builds the
    /// statement on the pool it is given.
    pub async fn read<T, F>(
        &self,
        doing: &'static str,
        step: impl Fn(PgPool) -> F,
    ) -> StoreResult<T>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        self.read_from(Source::AnyCopy, doing, step).await
    }

    async fn read_from<T, F>(
        &self,
        source: Source,
        doing: &'static str,
        step: impl Fn(PgPool) -> F,
    ) -> StoreResult<T>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let on_replica = self
            .replicas
            .as_deref()
            .filter(|_| source == Source::AnyCopy)
            .and_then(|r| Some((r, r.pick(minigram::read_floor::get())?)));
        if let Some((replicas, turn)) = on_replica {
            match statement(step(turn.replica.pool().clone())).await {
                Ok(found) => return Ok(found),
                Err(e) if Self::replica_trouble(&e) => {
                    turn.replica.down(&e.to_string());
                    replicas.retried.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(self.error(e, doing)),
            }
        }
        self.run(doing, step(self.pool.clone())).await
    }

    /// An error that says the replica, not the read, failed: what the
    /// primary would classify as unavailable, or a statement cancelled
    /// because replay needed what it read (40001).
    fn replica_trouble(e: &sqlx::Error) -> bool {
        let cancelled =
            matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"));
        cancelled || is_unavailable(e)
    }

    /// The primary's WAL position now: after a write has committed, a
    /// position every copy that shows the write has reached (one round
    /// trip; only with replicas, for read-your-writes).
    pub async fn position(&self) -> StoreResult<u64> {
        let lsn = self
            .run(
                "reading the WAL position",
                sqlx::query_scalar::<_, String>("SELECT pg_current_wal_lsn()::text")
                    .fetch_one(&self.pool),
            )
            .await?;
        parse_lsn(&lsn).ok_or_else(|| {
            StoreError::Unexpected(anyhow::anyhow!("an unreadable WAL position: {lsn:?}"))
        })
    }

    /// Runs a Postgres step, counted in flight (for the pool-waiter figure)
    /// and timed (for Server-Timing). Callers that must read a database
    /// error themselves (unique or foreign-key violations) use this.
    pub async fn timed<T>(
        &self,
        step: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> StoreResult<Result<T, sqlx::Error>> {
        // A bounded queue in front of the pool: under overload, waiting up
        // to the acquire timeout only to fail makes every answer slow, so a
        // call that would find the queue full is refused at once (a fast
        // 503, as the admission limit and the hash queue do).
        let stats = &self.stats;
        let Some(_in_flight) = InFlight::join(&stats.pg_in_flight, self.limit) else {
            stats.pg_shed.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Overloaded);
        };
        let result = statement(step).await;
        if matches!(result, Err(sqlx::Error::PoolTimedOut)) {
            stats.pg_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(result)
    }

    /// A timed Postgres step whose error is classified (503 or 500).
    pub async fn run<T>(
        &self,
        doing: &'static str,
        step: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> StoreResult<T> {
        self.timed(step).await?.map_err(|e| self.error(e, doing))
    }

    pub fn error(&self, e: sqlx::Error, doing: &'static str) -> StoreError {
        let unavailable = is_unavailable(&e);
        let e = anyhow::Error::new(e).context(doing);
        if unavailable {
            StoreError::Unavailable(e)
        } else {
            StoreError::Unexpected(e)
        }
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.run("ping", sqlx::query("SELECT 1").execute(&self.pool))
            .await?;
        Ok(())
    }

    pub async fn integrity(&self) -> StoreResult<Integrity> {
        let pg = &self.pool;
        let count = |sql: &'static str| async move {
            self.run(
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
            .run(
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

    pub async fn is_empty(&self) -> StoreResult<bool> {
        self.run(
            "counting users",
            sqlx::query_scalar::<_, bool>("SELECT NOT EXISTS (SELECT 1 FROM users)")
                .fetch_one(&self.pool),
        )
        .await
    }

    pub async fn create_user(&self, user: NewUser) -> StoreResult<UserId> {
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO users (username, email, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user.username.as_str())
        .bind(user.email.as_ref().map(Email::as_str))
        .bind(&user.password_hash)
        .bind(now_ms())
        .fetch_one(&self.pool);
        match self.timed(inserted).await? {
            Ok(id) => Ok(UserId(id)),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::UsernameTaken)
            }
            Err(e) => Err(self.error(e, "creating a user")),
        }
    }

    pub async fn credentials_for(&self, username: &str) -> StoreResult<Option<Credentials>> {
        let row = self
            .run(
                "reading credentials",
                sqlx::query_as::<_, (i64, String, String)>(
                    "SELECT id, username, password_hash FROM users WHERE lower(username) = lower($1)",
                )
                .bind(username)
                .fetch_optional(&self.pool),
            )
            .await?;
        Ok(row.map(|(id, username, password_hash)| Credentials {
            user_id: UserId(id),
            username: Username::from_trusted(username),
            password_hash,
        }))
    }

    pub async fn user_profile(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> StoreResult<Option<UserProfile>> {
        let viewer = viewer.map_or(0, |v| v.0);
        let row = self
            .read("reading a profile", |pool| async move {
                sqlx::query_as::<_, ProfileRow>(PROFILE)
                    .bind(user.0)
                    .bind(viewer)
                    .fetch_optional(&pool)
                    .await
            })
            .await?;
        Ok(row.map(|r| r.profile()))
    }

    pub async fn my_profile(&self, me: UserId) -> StoreResult<Option<MyProfile>> {
        let row = self
            .read("reading my profile", |pool| async move {
                sqlx::query_as::<_, ProfileRow>(PROFILE)
                    .bind(me.0)
                    .bind(0i64)
                    .fetch_optional(&pool)
                    .await
            })
            .await?;
        Ok(row.map(|r| MyProfile {
            profile: r.profile(),
            email: r.email.map(Email::from_trusted),
        }))
    }

    pub async fn set_follow(
        &self,
        follower: UserId,
        followee: UserId,
        on: bool,
    ) -> StoreResult<FollowState> {
        // One statement (one round trip, where a transaction took five:
        // BEGIN, the check, the write, the count, COMMIT): no row when the
        // followee does not exist. The count is read in the statement's
        // snapshot, which does not see its own change: that is added.
        let sql = if on {
            "WITH target AS (SELECT id FROM users WHERE id = $2),
             changed AS (
                 INSERT INTO follows (follower_id, followee_id, created_at)
                 SELECT $1, id, $3 FROM target
                 ON CONFLICT DO NOTHING RETURNING 1)
             SELECT (SELECT COUNT(*) FROM follows WHERE followee_id = $2)
                    + (SELECT COUNT(*) FROM changed)
             FROM target"
        } else {
            "WITH target AS (SELECT id FROM users WHERE id = $2),
             changed AS (
                 DELETE FROM follows
                 WHERE follower_id = $1 AND followee_id = $2 AND $3::bigint IS NOT NULL
                 RETURNING 1)
             SELECT (SELECT COUNT(*) FROM follows WHERE followee_id = $2)
                    - (SELECT COUNT(*) FROM changed)
             FROM target"
        };
        let followers = self
            .toggle("following", sql, follower.0, followee.0)
            .await?;
        Ok(FollowState {
            following: on,
            followers,
        })
    }

    /// Runs a one-statement toggle (a like, a follow) whose parameters are
    /// (`a`, `b`, now) and whose one row is the count after it; no row, or
    /// a reference to a row that is gone, is `NotFound`.
    async fn toggle(
        &self,
        doing: &'static str,
        sql: &'static str,
        a: i64,
        b: i64,
    ) -> StoreResult<i64> {
        let step = sqlx::query_scalar::<_, i64>(sql)
            .bind(a)
            .bind(b)
            .bind(now_ms())
            .fetch_optional(&self.pool);
        match self.timed(step).await? {
            Ok(Some(count)) => Ok(count),
            Ok(None) => Err(StoreError::NotFound),
            Err(e) if is_fk_violation(&e) => Err(StoreError::NotFound),
            Err(e) => Err(self.error(e, doing)),
        }
    }

    pub async fn insert_photo(&self, photo: NewPhoto) -> StoreResult<Photo> {
        let created_at = now_ms();
        let row = self
            .run(
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
                .fetch_one(&self.pool),
            )
            .await?;
        Ok(photo.stored(PhotoId(row.0), row.1, created_at))
    }

    pub async fn photo(
        &self,
        viewer: Option<UserId>,
        photo: PhotoId,
    ) -> StoreResult<Option<Photo>> {
        let viewer = viewer.map_or(0, |v| v.0);
        let row = self
            .read("reading a photo", |pool| async move {
                sqlx::query_as::<_, PhotoRow>(AssertSqlSafe(format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id WHERE p.id = $2"
                )))
                .bind(viewer)
                .bind(photo.0)
                .fetch_optional(&pool)
                .await
            })
            .await?;
        row.map(Photo::try_from).transpose()
    }

    pub async fn set_like(&self, user: UserId, photo: PhotoId, on: bool) -> StoreResult<LikeState> {
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
        let like_count = self.toggle("liking", sql, photo.0, user.0).await?;
        Ok(LikeState {
            liked: on,
            like_count,
        })
    }

    pub async fn explore(&self, viewer: Option<UserId>, page: PageQuery) -> StoreResult<PhotoPage> {
        let sql = format!(
            "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
             WHERE p.status = 'ready' AND p.id < $2 ORDER BY p.id DESC LIMIT $3"
        );
        let viewer = viewer.map_or(0, |v| v.0);
        self.photo_page(Source::AnyCopy, "reading explore", sql, viewer, page, None)
            .await
    }

    pub async fn user_photos(
        &self,
        viewer: Option<UserId>,
        owner: UserId,
        page: PageQuery,
    ) -> StoreResult<Option<PhotoPage>> {
        let exists = self
            .read("checking a user", |pool| async move {
                sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE id = $1")
                    .bind(owner.0)
                    .fetch_optional(&pool)
                    .await
            })
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
             WHERE p.user_id = $4 AND p.status = 'ready' AND p.id < $2
             ORDER BY p.id DESC LIMIT $3"
        );
        let viewer = viewer.map_or(0, |v| v.0);
        let doing = "reading a user's photos";
        self.photo_page(Source::AnyCopy, doing, sql, viewer, page, Some(owner.0))
            .await
            .map(Some)
    }

    /// A feed page straight from Postgres, without the cache: a read a
    /// replica may serve.
    pub async fn feed(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        self.feed_from(Source::AnyCopy, viewer, page).await
    }

    /// A feed page from the primary: what the feed cache reads when it
    /// cannot answer from what it holds. A page built from a lagging
    /// replica would be kept, and stay stale, for the cache's lifetime
    /// rather than the replica's lag; and the one-trip cached read does not
    /// carry the reader's floor.
    pub async fn primary_feed(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        self.feed_from(Source::Primary, viewer, page).await
    }

    async fn feed_from(
        &self,
        source: Source,
        viewer: UserId,
        page: PageQuery,
    ) -> StoreResult<PhotoPage> {
        let sql = format!(
            "SELECT {PHOTO_COLUMNS}
             FROM (SELECT $1::bigint AS uid UNION ALL
                   SELECT followee_id FROM follows WHERE follower_id = $1) f
             CROSS JOIN LATERAL (
                 SELECT * FROM photos WHERE user_id = f.uid AND status = 'ready' AND id < $2
                 ORDER BY id DESC LIMIT $3
             ) p
             JOIN users u ON u.id = p.user_id
             ORDER BY p.id DESC LIMIT $3"
        );
        self.photo_page(source, "reading a feed", sql, viewer.0, page, None)
            .await
    }

    /// The newest `cap` photo ids of a viewer's feed (their own photos and
    /// those of the people they follow): what a timeline is built from.
    /// From the primary, as the feed cache reads: a timeline built from a
    /// lagging replica would stay short of the missed photos for its life.
    pub async fn feed_ids(&self, viewer: UserId, cap: i64) -> StoreResult<Vec<i64>> {
        self.read_from(Source::Primary, "building a timeline", |pool| async move {
            sqlx::query_scalar::<_, i64>(FEED_IDS)
                .bind(viewer.0)
                .bind(cap)
                .fetch_all(&pool)
                .await
        })
        .await
    }

    /// A feed page from a timeline: the photos of `ids` (already the page's
    /// newest, below its cursor) and, for a hybrid feed, the recent photos
    /// of the `celebrities` the viewer follows, merged in id order, in one
    /// query. A read a replica may serve (with the reader's floor): a
    /// photo it has not replayed yet is left out of this page only.
    pub async fn timeline_page(
        &self,
        viewer: UserId,
        ids: &[i64],
        celebrities: &[i64],
        page: PageQuery,
    ) -> StoreResult<PhotoPage> {
        // The celebrities' photos are one index range per followed
        // celebrity (photos (user_id, id)), as the pull feed reads them; a
        // photo in both sets is one row (IN is a semi-join).
        let sql = format!(
            "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
             WHERE p.id IN (
                 SELECT id FROM photos WHERE id = ANY($4) AND status = 'ready' AND id < $2
                 UNION ALL
                 SELECT c.id
                 FROM (SELECT followee_id FROM follows
                       WHERE follower_id = $1 AND followee_id = ANY($5)) f
                 CROSS JOIN LATERAL (
                     SELECT id FROM photos
                     WHERE user_id = f.followee_id AND status = 'ready' AND id < $2
                     ORDER BY id DESC LIMIT $3
                 ) c)
             ORDER BY p.id DESC LIMIT $3"
        );
        let rows = self
            .read("reading a timeline", |pool| {
                let query = sqlx::query_as::<_, PhotoRow>(AssertSqlSafe(sql.clone()))
                    .bind(viewer.0)
                    .bind(before(page))
                    .bind(fetch(page))
                    .bind(ids.to_vec())
                    .bind(celebrities.to_vec());
                async move { query.fetch_all(&pool).await }
            })
            .await?;
        page_of(rows, page)
    }

    /// Runs a page query whose parameters are (viewer, before, limit + 1,
    /// `extra` if any): `limit + 1` rows, the last only proving that a
    /// next page exists. A read a replica may serve.
    async fn photo_page(
        &self,
        source: Source,
        doing: &'static str,
        sql: String,
        viewer: i64,
        page: PageQuery,
        extra: Option<i64>,
    ) -> StoreResult<PhotoPage> {
        let rows = self
            .read_from(source, doing, |pool| {
                let mut query = sqlx::query_as::<_, PhotoRow>(AssertSqlSafe(sql.clone()))
                    .bind(viewer)
                    .bind(before(page))
                    .bind(fetch(page));
                if let Some(extra) = extra {
                    query = query.bind(extra);
                }
                async move { query.fetch_all(&pool).await }
            })
            .await?;
        page_of(rows, page)
    }

    pub async fn import(&self, data: Dataset) -> StoreResult<ImportSummary> {
        self.run(
            "importing a dataset",
            crate::import::copy_dataset(&self.pool, &data),
        )
        .await
    }

    /// Who follows `owner` (whose feeds a new photo of theirs changes).
    /// The followers of `owner`, at most `most` of them (`None`: all).
    /// Hybrid asks for one more than its threshold: enough to tell a
    /// celebrity, without reading all their followers for every photo.
    pub async fn followers(&self, owner: UserId, most: Option<usize>) -> StoreResult<Vec<i64>> {
        // LIMIT NULL is no limit.
        let most = most.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        self.run(
            "reading followers",
            sqlx::query_scalar::<_, i64>(
                "SELECT follower_id FROM follows WHERE followee_id = $1 LIMIT $2",
            )
            .bind(owner.0)
            .bind(most)
            .fetch_all(&self.pool),
        )
        .await
    }
}

/// A page from the `limit + 1` rows of a page query.
fn page_of(rows: Vec<PhotoRow>, page: PageQuery) -> StoreResult<PhotoPage> {
    let photos = rows
        .into_iter()
        .map(Photo::try_from)
        .collect::<StoreResult<_>>()?;
    Ok(PhotoPage::from_rows(photos, page))
}

/// The newest `$2` photo ids of viewer `$1`'s feed (their own photos and
/// those of the people they follow): one index range per followed person,
/// merged. A timeline is built from it; the feed cache keeps it as its
/// window.
pub(super) const FEED_IDS: &str = "SELECT p.id
     FROM (SELECT $1::bigint AS uid UNION ALL
           SELECT followee_id FROM follows WHERE follower_id = $1) f
     CROSS JOIN LATERAL (
         SELECT id FROM photos WHERE user_id = f.uid AND status = 'ready'
         ORDER BY id DESC LIMIT $2
     ) p
     ORDER BY p.id DESC LIMIT $2";

/// Where a read may be served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A replica that has the reader's own writes, or the primary.
    AnyCopy,
    Primary,
}

pub(super) fn before(page: PageQuery) -> i64 {
    page.before.map_or(i64::MAX, |c| c.0.0)
}

pub(super) fn fetch(page: PageQuery) -> i64 {
    i64::from(page.limit.get()) + 1
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The columns of a `Photo` for `p` joined with its owner `u`; `$1` is the
/// viewer (0 when anonymous: no user has id 0).
pub(super) const PHOTO_COLUMNS: &str = "p.id, p.user_id, u.username, p.caption, p.file_name, p.width, \
     p.height, p.created_at, p.like_count, p.status, \
     EXISTS (SELECT 1 FROM likes l WHERE l.photo_id = p.id AND l.user_id = $1) AS liked";

#[derive(sqlx::FromRow)]
pub(super) struct PhotoRow {
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

impl TryFrom<PhotoRow> for Photo {
    type Error = StoreError;

    fn try_from(r: PhotoRow) -> StoreResult<Self> {
        let status = PhotoStatus::parse(&r.status).ok_or_else(|| {
            StoreError::Unexpected(anyhow::anyhow!(
                "photo {} has a status this code does not know: {:?}",
                r.id,
                r.status
            ))
        })?;
        Ok(Photo {
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
            status,
        })
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

/// Runs one statement, on the primary or a replica: one round trip (plus
/// the ping of a connection that sat idle, counted where it is sent;
/// opening a new connection is not counted), timed as `db`.
async fn statement<T>(step: impl Future<Output = T>) -> T {
    timing::round_trips(Remote::Postgres, 1);
    let started = Instant::now();
    let result = step.await;
    timing::record(Phase::Db, started.elapsed());
    result
}

/// A failure of the server or the way to it, not of the statement: 503.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) => true,
        // 08: connection exception; 57P0x: shutting down / starting up;
        // 53300: too many connections.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
        _ => false,
    }
}

fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}
