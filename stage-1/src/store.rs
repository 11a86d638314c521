//! The `Store` on one SQLite file (rusqlite, bundled SQLite).
//!
//! SQLite allows one writer at a time. Rather than let writers collide and
//! spin on SQLITE_BUSY, every write goes to the one write connection,
//! owned by the writer thread ([`crate::writer`]), which commits them
//! alone or, with group commit, many in one transaction. Reads use a small
//! pool of connections that, in WAL mode, run in parallel with the writer,
//! on tokio's blocking pool, never on an async worker.
//!
//! A write here is a closure run inside the writer's `BEGIN IMMEDIATE`
//! transaction (a deferred transaction that upgrades to a write gets
//! SQLITE_BUSY at once in WAL mode, ignoring busy_timeout): it returns its
//! result or a domain error, and the writer makes it durable or rolls it
//! back.

use anyhow::Context;
use minigram::auth::{AttemptLimit, LocalStrikes, Reservation};
use minigram::domain::{Email, PageQuery, PhotoId, UserId, Username};
use minigram::store::{
    Credentials, Dataset, FollowState, ImportSummary, Integrity, LikeState, MyProfile, NewPhoto,
    NewSession, NewUser, Photo, PhotoPage, PhotoStatus, SessionUser, Store, StoreError,
    StoreResult, UserProfile,
};
use minigram::telemetry::Figure;
use minigram::timing;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::writer::{GroupCommit, Write, Writer};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The migrations, in order; `PRAGMA user_version` counts how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_session_limits.sql"),
];

/// SQLite's journal: how a commit is made atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalMode {
    /// Write-ahead log: readers never block the writer; one fsync per commit.
    Wal,
    /// Rollback journal (SQLite's historical default): a commit rewrites
    /// pages in place with several fsyncs, and readers wait for writers.
    Delete,
}

/// How hard SQLite pushes each commit to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Synchronous {
    /// No fsync: a crash of the OS or a power loss can corrupt the file.
    Off,
    /// WAL: an app crash loses nothing; a power loss may lose the last commits.
    Normal,
    /// fsync on every commit: an acknowledged write survives a power loss.
    Full,
}

#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub journal_mode: JournalMode,
    pub synchronous: Synchronous,
    /// How long a connection waits on a lock held by another before failing.
    pub busy_timeout: Duration,
    /// Read connections (and so concurrent reads) at most.
    pub max_readers: usize,
    /// How the writer groups commits.
    pub group_commit: GroupCommit,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            journal_mode: JournalMode::Wal,
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            max_readers: 8,
            group_commit: GroupCommit::DEFAULT,
        }
    }
}

/// Counters the lab reads besides the writer's ([`crate::writer::WriterStats`]).
#[derive(Debug, Default)]
pub struct SqliteStats {
    /// Calls that failed with SQLITE_BUSY / SQLITE_LOCKED.
    pub busy: AtomicU64,
    /// Total time reads spent running their SQL, in microseconds.
    pub read_us: AtomicU64,
}

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: SqliteConfig,
    /// The thread that owns the one write connection.
    writer: Writer,
    /// Idle read connections; at most `max_readers` exist.
    readers: Mutex<Vec<Connection>>,
    read_gate: Semaphore,
    stats: Arc<SqliteStats>,
    strikes: LocalStrikes,
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl SqliteStats {
    fn classify(&self, e: rusqlite::Error, doing: &'static str) -> StoreError {
        if is_busy(&e) {
            self.busy.fetch_add(1, Ordering::Relaxed);
            StoreError::Unavailable(anyhow::Error::new(e).context(doing))
        } else {
            StoreError::Unexpected(anyhow::Error::new(e).context(doing))
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub fn open(config: SqliteConfig) -> anyhow::Result<Self> {
        if let Some(dir) = config.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut writer = open_connection(&config, false)?;
        let mode = match config.journal_mode {
            JournalMode::Wal => "wal",
            JournalMode::Delete => "delete",
        };
        let applied: String = writer
            .query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))
            .context("setting the journal mode")?;
        anyhow::ensure!(
            applied.eq_ignore_ascii_case(mode),
            "SQLite refused journal_mode={mode}"
        );
        migrate(&mut writer)?;
        let max_readers = config.max_readers.max(1);
        let writer =
            Writer::start(writer, config.group_commit).context("starting the SQLite writer")?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                readers: Mutex::new(Vec::with_capacity(max_readers)),
                read_gate: Semaphore::new(max_readers),
                stats: Arc::default(),
                strikes: LocalStrikes::default(),
                config,
            }),
        })
    }

    pub fn config(&self) -> &SqliteConfig {
        &self.inner.config
    }

    /// Creates (`on`) or drops (`off`) the feed and profile index
    /// `photos_by_user` — the one change of the index-impact experiment.
    /// The migration creates it; dropping it makes every feed page and
    /// profile a scan of the photos table. Called before serving.
    pub fn set_feed_index(&self, on: bool) -> anyhow::Result<()> {
        let sql = if on {
            "CREATE INDEX IF NOT EXISTS photos_by_user ON photos (user_id, id)"
        } else {
            "DROP INDEX IF EXISTS photos_by_user"
        };
        self.inner.writer.alone(move |conn| {
            conn.execute_batch(sql)
                .with_context(|| format!("changing the feed index: {sql}"))?;
            // Pay for the change now, not during the first measured writes:
            // creating or dropping an index over a big table leaves many WAL
            // pages that the next checkpoint would otherwise write back.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .context("checkpointing after the feed index change")
        })?
    }

    pub fn stats(&self) -> &SqliteStats {
        &self.inner.stats
    }

    pub fn writer_stats(&self) -> &crate::writer::WriterStats {
        self.inner.writer.stats()
    }

    /// The writer, for jobs that need the bare connection (the commit
    /// probe).
    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// Runs `f` on a read connection, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let started = Instant::now();
        self.inner
            .read_gate
            .acquire()
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?
            .forget();
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || {
            let _slot = ReaderSlot(&inner);
            let idle = inner.readers.lock().expect("reader pool poisoned").pop();
            let conn = match idle {
                Some(c) => c,
                None => open_connection(&inner.config, true).map_err(StoreError::Unexpected)?,
            };
            let began = Instant::now();
            let out = f(&conn).map_err(|e| inner.stats.classify(e, doing));
            inner
                .stats
                .read_us
                .fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
            inner
                .readers
                .lock()
                .expect("reader pool poisoned")
                .push(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Unexpected(e.into()))?;
        timing::record(timing::Phase::Db, started.elapsed());
        result
    }

    /// Runs `f` inside the writer's transaction and answers once that
    /// transaction committed (or with its error).
    async fn write<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, WriteError> + Send + 'static,
    ) -> StoreResult<T> {
        let started = Instant::now();
        let (answer, answered) = oneshot::channel();
        let write = Pending {
            doing,
            f: Some(f),
            out: None,
            answer,
            stats: Arc::clone(&self.inner.stats),
        };
        self.inner
            .writer
            .queue(Box::new(write))
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        // A write whose answer was dropped did not run (its thread
        // panicked): it is not durable.
        let result = answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unexpected(anyhow::anyhow!(
                "{doing}: the write was dropped by the writer"
            )))
        });
        timing::record(timing::Phase::Db, started.elapsed());
        result
    }

    /// Runs `f` on the bare write connection between groups (a dataset
    /// import in its own transaction).
    async fn write_alone<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let stats = Arc::clone(&inner.stats);
            inner
                .writer
                .alone(f)
                .map_err(|e| StoreError::Unexpected(e.into()))?
                .map_err(|e| stats.classify(e, doing))
        })
        .await
        .map_err(|e| StoreError::Unexpected(e.into()))?
    }
}

/// A write waiting for the writer: its closure, then its result until the
/// group's commit says whether it stands.
struct Pending<T, F> {
    doing: &'static str,
    f: Option<F>,
    out: Option<Result<T, WriteError>>,
    answer: oneshot::Sender<StoreResult<T>>,
    stats: Arc<SqliteStats>,
}

impl<T, F> Write for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, WriteError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let out = f(conn);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn answer(self: Box<Self>, commit: Option<&rusqlite::Error>) {
        let doing = self.doing;
        let result = match (commit, self.out) {
            (Some(e), _) => Err(if is_busy(e) {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                StoreError::Unavailable(anyhow::anyhow!("{doing}: committing: {e}"))
            } else {
                StoreError::Unexpected(anyhow::anyhow!("{doing}: committing: {e}"))
            }),
            (None, Some(Ok(v))) => Ok(v),
            (None, Some(Err(WriteError::Store(e)))) => Err(e),
            (None, Some(Err(WriteError::Sqlite(e)))) => Err(self.stats.classify(e, doing)),
            (None, None) => Err(StoreError::Unexpected(anyhow::anyhow!(
                "{doing}: the write panicked"
            ))),
        };
        // The requester may have gone (a dropped connection): the write
        // stands all the same.
        let _ = self.answer.send(result);
    }
}

/// A read connection's slot, given back when the read's blocking task ends
/// — not when the awaiting request is next polled, which on a busy machine
/// can be milliseconds later. A slot is still held while its blocking
/// thread waits for a core: with the machine short of CPU, the lab saw 7.2
/// of 8 slots held but only 1.1 connections running SQL (`sqlite.readMs`),
/// so the verdict judges the readers by the latter.
struct ReaderSlot<'a>(&'a Inner);

impl Drop for ReaderSlot<'_> {
    fn drop(&mut self) {
        self.0.read_gate.add_permits(1);
    }
}

/// A write closure fails with SQLite's error or with a domain outcome.
enum WriteError {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

fn open_connection(config: &SqliteConfig, read_only: bool) -> anyhow::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(&config.path, flags)
        .with_context(|| format!("cannot open SQLite database {}", config.path.display()))?;
    conn.busy_timeout(config.busy_timeout)?;
    let sync = match config.synchronous {
        Synchronous::Off => "OFF",
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = {sync}; PRAGMA cache_size = -16000;"
    ))
    .context("configuring the SQLite connection")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)
            .with_context(|| format!("applying migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The columns of a `Photo`, for `p` joined with its owner `u`; `?1` is
/// the viewer (0 when anonymous: no user has id 0).
const PHOTO_COLUMNS: &str = "p.id, p.user_id, u.username, p.caption, p.file_name, p.width, \
     p.height, p.created_at, p.like_count, \
     EXISTS (SELECT 1 FROM likes l WHERE l.photo_id = p.id AND l.user_id = ?1)";

fn photo_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Photo> {
    let file_name: String = r.get(4)?;
    Ok(Photo {
        id: PhotoId(r.get(0)?),
        user_id: UserId(r.get(1)?),
        username: r.get(2)?,
        caption: r.get(3)?,
        url: Photo::url_for(&file_name),
        width: r.get(5)?,
        height: r.get(6)?,
        created_at: r.get(7)?,
        like_count: r.get(8)?,
        liked_by_me: r.get(9)?,
        // Stage 1 processes every upload in its request: always ready.
        status: PhotoStatus::Ready,
    })
}

/// Runs a page query whose parameters are (viewer, before, limit + 1, extra...).
fn photo_page(
    conn: &Connection,
    sql: &str,
    viewer: Option<UserId>,
    page: PageQuery,
    extra: Option<i64>,
) -> rusqlite::Result<PhotoPage> {
    let mut stmt = conn.prepare_cached(sql)?;
    let before = page.before.map_or(i64::MAX, |c| c.0.0);
    let fetch = i64::from(page.limit.get()) + 1;
    let viewer = viewer.map_or(0, |v| v.0);
    let rows = match extra {
        Some(x) => stmt
            .query_map(params![viewer, before, fetch, x], photo_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => stmt
            .query_map(params![viewer, before, fetch], photo_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(PhotoPage::from_rows(rows, page))
}

fn profile(
    conn: &Connection,
    viewer: Option<UserId>,
    user: UserId,
) -> rusqlite::Result<Option<UserProfile>> {
    conn.prepare_cached(
        "SELECT u.id, u.username,
                (SELECT COUNT(*) FROM follows WHERE followee_id = u.id),
                (SELECT COUNT(*) FROM follows WHERE follower_id = u.id),
                (SELECT COUNT(*) FROM photos WHERE user_id = u.id),
                EXISTS (SELECT 1 FROM follows WHERE follower_id = ?2 AND followee_id = u.id)
         FROM users u WHERE u.id = ?1",
    )?
    .query_row(params![user.0, viewer.map_or(0, |v| v.0)], |r| {
        Ok(UserProfile {
            id: UserId(r.get(0)?),
            username: Username::from_trusted(r.get(1)?),
            followers: r.get(2)?,
            following: r.get(3)?,
            photos: r.get(4)?,
            followed_by_me: r.get(5)?,
        })
    })
    .optional()
}

fn exists(conn: &Connection, sql: &str, id: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read("ping", |c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn integrity(&self) -> StoreResult<Integrity> {
        self.read("checking integrity", |c| {
            let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
            let mut problems: Vec<String> = c
                .prepare("PRAGMA integrity_check")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|line| line != "ok")
                .map(|line| format!("sqlite integrity_check: {line}"))
                .collect();
            let dangling = count("SELECT COUNT(*) FROM pragma_foreign_key_check")?;
            if dangling > 0 {
                problems.push(format!("{dangling} rows point to missing rows"));
            }
            let wrong = count(minigram::store::LIKE_COUNT_MISMATCHES)?;
            if wrong > 0 {
                problems.push(format!(
                    "{wrong} photos' like_count differs from their like rows"
                ));
            }
            let files = c
                .prepare("SELECT DISTINCT file_name FROM photos")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Integrity {
                users: count("SELECT COUNT(*) FROM users")?,
                photos: count("SELECT COUNT(*) FROM photos")?,
                likes: count("SELECT COUNT(*) FROM likes")?,
                follows: count("SELECT COUNT(*) FROM follows")?,
                problems,
                files,
            })
        })
        .await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.read("counting users", |c| {
            c.query_row("SELECT NOT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))
        })
        .await
    }

    async fn create_user(&self, user: NewUser) -> StoreResult<UserId> {
        self.write("creating a user", move |conn| {
            let tx = conn;
            let inserted = tx.prepare_cached(
                "INSERT INTO users (username, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                user.username.as_str(),
                user.email.as_ref().map(Email::as_str),
                user.password_hash,
                now_ms()
            ]);
            match inserted {
                Err(e) if is_unique_violation(&e) => return Err(WriteError::Store(StoreError::UsernameTaken)),
                other => other?,
            };
            let id = tx.last_insert_rowid();
            Ok(UserId(id))
        })
        .await
    }

    async fn credentials_for(&self, username: &str) -> StoreResult<Option<Credentials>> {
        let username = username.to_owned();
        self.read("reading credentials", move |c| {
            c.prepare_cached("SELECT id, username, password_hash FROM users WHERE username = ?1")?
                .query_row([username], |r| {
                    Ok(Credentials {
                        user_id: UserId(r.get(0)?),
                        username: Username::from_trusted(r.get(1)?),
                        password_hash: r.get(2)?,
                    })
                })
                .optional()
        })
        .await
    }

    async fn create_session(&self, session: NewSession) -> StoreResult<()> {
        self.write("creating a session", move |conn| {
            conn.prepare_cached(
                "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                &session.token_hash[..],
                session.user.user_id.0,
                session.expires_at
            ])?;
            // At most MAX_SESSIONS_PER_USER per user: the oldest go first.
            conn.prepare_cached(
                "DELETE FROM sessions WHERE user_id = ?1 AND token_hash IN (
                     SELECT token_hash FROM sessions WHERE user_id = ?1
                     ORDER BY expires_at DESC LIMIT -1 OFFSET ?2)",
            )?
            .execute(params![
                session.user.user_id.0,
                minigram::auth::MAX_SESSIONS_PER_USER
            ])?;
            Ok(())
        })
        .await
    }

    async fn purge_expired_sessions(&self) -> StoreResult<u64> {
        let now = minigram::app::now_secs();
        self.write("purging expired sessions", move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?
                .execute([now])?;
            Ok(n as u64)
        })
        .await
    }

    async fn session_user(&self, token_hash: [u8; 32]) -> StoreResult<Option<SessionUser>> {
        let now = minigram::app::now_secs();
        self.read("reading a session", move |c| {
            c.prepare_cached(
                "SELECT s.user_id, u.username FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            )?
            .query_row(params![&token_hash[..], now], |r| {
                Ok(SessionUser {
                    user_id: UserId(r.get(0)?),
                    username: Username::from_trusted(r.get(1)?),
                })
            })
            .optional()
        })
        .await
    }

    async fn revoke_session(&self, token_hash: [u8; 32]) -> StoreResult<bool> {
        self.write("revoking a session", move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                .execute([&token_hash[..]])?;
            Ok(n > 0)
        })
        .await
    }

    // Stage 1 is one process: failures are counted in memory (a restart
    // forgets them, which only ever unlocks an account early).
    async fn reserve_sign_in(
        &self,
        limits: &[AttemptLimit],
        window: Duration,
    ) -> StoreResult<Reservation> {
        Ok(self.inner.strikes.reserve(limits, window))
    }

    async fn release_sign_in(&self, release: &[&str], clear: &[&str]) -> StoreResult<()> {
        self.inner.strikes.release(release);
        for key in clear {
            self.inner.strikes.clear(key);
        }
        Ok(())
    }

    async fn user_profile(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> StoreResult<Option<UserProfile>> {
        self.read("reading a profile", move |c| profile(c, viewer, user))
            .await
    }

    async fn my_profile(&self, me: UserId) -> StoreResult<Option<MyProfile>> {
        self.read("reading my profile", move |c| {
            let Some(p) = profile(c, None, me)? else {
                return Ok(None);
            };
            let email: Option<String> = c
                .prepare_cached("SELECT email FROM users WHERE id = ?1")?
                .query_row([me.0], |r| r.get(0))?;
            Ok(Some(MyProfile {
                profile: p,
                email: email.map(Email::from_trusted),
            }))
        })
        .await
    }

    async fn set_follow(
        &self,
        follower: UserId,
        followee: UserId,
        on: bool,
    ) -> StoreResult<FollowState> {
        self.write("following", move |conn| {
            let tx = conn;
            if !exists(tx, "SELECT 1 FROM users WHERE id = ?1", followee.0)? {
                return Err(WriteError::Store(StoreError::NotFound));
            }
            if on {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO follows (follower_id, followee_id, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![follower.0, followee.0, now_ms()])?;
            } else {
                tx.prepare_cached("DELETE FROM follows WHERE follower_id = ?1 AND followee_id = ?2")?
                    .execute(params![follower.0, followee.0])?;
            }
            let followers: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM follows WHERE followee_id = ?1")?
                .query_row([followee.0], |r| r.get(0))?;
            Ok(FollowState { following: on, followers })
        })
        .await
    }

    async fn insert_photo(&self, photo: NewPhoto) -> StoreResult<Photo> {
        self.write("inserting a photo", move |conn| {
            let tx = conn;
            let created_at = now_ms();
            let username: String = tx
                .prepare_cached("SELECT username FROM users WHERE id = ?1")?
                .query_row([photo.user_id.0], |r| r.get(0))
                .optional()?
                .ok_or(WriteError::Store(StoreError::NotFound))?;
            tx.prepare_cached(
                "INSERT INTO photos (user_id, caption, file_name, width, height, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                photo.user_id.0,
                photo.caption.as_str(),
                photo.file_name,
                photo.width,
                photo.height,
                created_at
            ])?;
            let id = tx.last_insert_rowid();
            Ok(Photo {
                id: PhotoId(id),
                user_id: photo.user_id,
                username,
                caption: photo.caption.as_str().to_owned(),
                url: Photo::url_for(&photo.file_name),
                width: photo.width,
                height: photo.height,
                created_at,
                like_count: 0,
                liked_by_me: false,
                status: PhotoStatus::Ready,
            })
        })
        .await
    }

    async fn photo(&self, viewer: Option<UserId>, photo: PhotoId) -> StoreResult<Option<Photo>> {
        self.read("reading a photo", move |c| {
            c.prepare_cached(&format!(
                "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id WHERE p.id = ?2"
            ))?
            .query_row(params![viewer.map_or(0, |v| v.0), photo.0], photo_row)
            .optional()
        })
        .await
    }

    async fn set_like(&self, user: UserId, photo: PhotoId, on: bool) -> StoreResult<LikeState> {
        self.write("liking", move |conn| {
            let tx = conn;
            if !exists(tx, "SELECT 1 FROM photos WHERE id = ?1", photo.0)? {
                return Err(WriteError::Store(StoreError::NotFound));
            }
            let changed = if on {
                tx.prepare_cached("INSERT OR IGNORE INTO likes (photo_id, user_id, created_at) VALUES (?1, ?2, ?3)")?
                    .execute(params![photo.0, user.0, now_ms()])?
            } else {
                tx.prepare_cached("DELETE FROM likes WHERE photo_id = ?1 AND user_id = ?2")?
                    .execute(params![photo.0, user.0])?
            };
            if changed > 0 {
                let delta = if on { 1 } else { -1 };
                tx.prepare_cached("UPDATE photos SET like_count = like_count + ?2 WHERE id = ?1")?
                    .execute(params![photo.0, delta])?;
            }
            let like_count: i64 = tx
                .prepare_cached("SELECT like_count FROM photos WHERE id = ?1")?
                .query_row([photo.0], |r| r.get(0))?;
            Ok(LikeState { liked: on, like_count })
        })
        .await
    }

    async fn feed(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        self.read("reading a feed", move |c| {
            photo_page(
                c,
                &format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
                     WHERE p.user_id IN (SELECT followee_id FROM follows WHERE follower_id = ?1
                                         UNION ALL SELECT ?1)
                       AND p.id < ?2
                     ORDER BY p.id DESC LIMIT ?3"
                ),
                Some(viewer),
                page,
                None,
            )
        })
        .await
    }

    async fn explore(&self, viewer: Option<UserId>, page: PageQuery) -> StoreResult<PhotoPage> {
        self.read("reading explore", move |c| {
            photo_page(
                c,
                &format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
                     WHERE p.id < ?2 ORDER BY p.id DESC LIMIT ?3"
                ),
                viewer,
                page,
                None,
            )
        })
        .await
    }

    async fn user_photos(
        &self,
        viewer: Option<UserId>,
        owner: UserId,
        page: PageQuery,
    ) -> StoreResult<Option<PhotoPage>> {
        self.read("reading a user's photos", move |c| {
            if !exists(c, "SELECT 1 FROM users WHERE id = ?1", owner.0)? {
                return Ok(None);
            }
            photo_page(
                c,
                &format!(
                    "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
                     WHERE p.user_id = ?4 AND p.id < ?2 ORDER BY p.id DESC LIMIT ?3"
                ),
                viewer,
                page,
                Some(owner.0),
            )
            .map(Some)
        })
        .await
    }

    fn figures(&self) -> Vec<Figure> {
        let st = &self.inner.stats;
        let w = self.inner.writer.stats();
        let readers_busy =
            self.inner.config.max_readers.max(1) - self.inner.read_gate.available_permits();
        vec![
            Figure::gauge(
                "sqlite.writersWaiting",
                "SQLite writes waiting for the one writer",
                "minigram_sqlite_writers_waiting",
                w.waiting.load(Ordering::Relaxed) as f64,
            ),
            Figure::counter(
                "sqlite.writeWaitMs",
                "SQLite lock wait: ms writes spent queued",
                "minigram_sqlite_write_wait_milliseconds_total",
                w.write_wait_us.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            Figure::counter(
                "sqlite.writes",
                "SQLite writes (requests' write transactions or savepoints)",
                "minigram_sqlite_writes_total",
                w.writes.load(Ordering::Relaxed) as f64,
            ),
            Figure::counter(
                "sqlite.commits",
                "SQLite commits (one per group of writes)",
                "minigram_sqlite_commits_total",
                w.commits.load(Ordering::Relaxed) as f64,
            ),
            Figure::gauge(
                "sqlite.batchSize",
                "SQLite writes per commit (mean over the last second)",
                "minigram_sqlite_writes_per_commit",
                w.recent_batch_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            Figure::gauge(
                "sqlite.largestBatch",
                "SQLite writes in the largest commit so far",
                "minigram_sqlite_largest_commit_writes",
                w.largest_batch.load(Ordering::Relaxed) as f64,
            ),
            Figure::counter(
                "sqlite.busy",
                "SQLITE_BUSY / LOCKED errors",
                "minigram_sqlite_busy_total",
                st.busy.load(Ordering::Relaxed) as f64,
            ),
            Figure::counter(
                "sqlite.readMs",
                "SQLite reads: ms spent running SQL (per second: connections truly reading)",
                "minigram_sqlite_read_milliseconds_total",
                st.read_us.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            Figure::gauge(
                "sqlite.readersBusy",
                "SQLite read connections in use",
                "minigram_sqlite_readers_in_use",
                readers_busy as f64,
            ),
        ]
    }

    async fn import(&self, data: Dataset) -> StoreResult<ImportSummary> {
        self.write_alone("importing a dataset", move |conn| import(conn, &data))
            .await
    }
}

/// One transaction, prepared statements, ids captured as rows go in.
fn import(conn: &mut Connection, data: &Dataset) -> rusqlite::Result<ImportSummary> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut user_ids = Vec::with_capacity(data.users.len());
    {
        let mut stmt = tx.prepare(
            "INSERT INTO users (username, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for u in &data.users {
            stmt.execute(params![u.username, u.email, u.password_hash, u.created_at])?;
            user_ids.push(tx.last_insert_rowid());
        }
    }
    let mut like_counts = vec![0i64; data.photos.len()];
    for &(_, photo) in &data.likes {
        like_counts[photo] += 1;
    }
    let mut photo_ids = Vec::with_capacity(data.photos.len());
    {
        let mut stmt = tx.prepare(
            "INSERT INTO photos (user_id, caption, file_name, width, height, created_at, like_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (p, likes) in data.photos.iter().zip(&like_counts) {
            stmt.execute(params![
                user_ids[p.user],
                p.caption,
                p.file_name,
                p.width,
                p.height,
                p.created_at,
                likes
            ])?;
            photo_ids.push(tx.last_insert_rowid());
        }
    }
    {
        let mut stmt = tx.prepare(
            "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?1, ?2, ?3)",
        )?;
        for &(a, b) in &data.follows {
            stmt.execute(params![user_ids[a], user_ids[b], data.users[a].created_at])?;
        }
    }
    {
        let mut stmt =
            tx.prepare("INSERT INTO likes (photo_id, user_id, created_at) VALUES (?1, ?2, ?3)")?;
        for &(u, p) in &data.likes {
            stmt.execute(params![
                photo_ids[p],
                user_ids[u],
                data.photos[p].created_at
            ])?;
        }
    }
    tx.commit()?;
    conn.execute_batch("ANALYZE")?;
    Ok(ImportSummary {
        users: user_ids.len() as u64,
        photos: photo_ids.len() as u64,
        follows: data.follows.len() as u64,
        likes: data.likes.len() as u64,
    })
}

/// The database file inside a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("minigram.sqlite3")
}
