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
//!
//! The rooms: [`gates`] (the read pool and the queue to the writer),
//! [`queries`] (the SQL of each use case), [`import`] (bulk loading) and
//! [`figures`] (what the metrics read). This file opens the database and
//! maps each `Store` call to its query.

mod figures;
mod gates;
mod import;
mod queries;

use anyhow::Context;
use minigram::auth::{AttemptLimit, LocalStrikes, Reservation};
use minigram::domain::{PageQuery, PhotoId, UserId};
use minigram::store::{
    Credentials, Dataset, FollowState, ImportSummary, Integrity, LikeState, MyProfile, NewPhoto,
    NewSession, NewUser, NoPhotoQueue, Photo, PhotoPage, SessionUser, Store, StoreResult,
    UserProfile,
};
use minigram::telemetry::Figure;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

use crate::writer::{GroupCommit, Writer};
pub use gates::SqliteStats;
use gates::{migrate, open_connection};

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
}

impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read("ping", |c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn integrity(&self) -> StoreResult<Integrity> {
        self.read("checking integrity", queries::integrity).await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.read("counting users", queries::is_empty).await
    }

    async fn create_user(&self, user: NewUser) -> StoreResult<UserId> {
        self.write("creating a user", move |c| queries::create_user(c, user))
            .await
    }

    async fn credentials_for(&self, username: &str) -> StoreResult<Option<Credentials>> {
        let username = username.to_owned();
        self.read("reading credentials", move |c| {
            queries::credentials_for(c, &username)
        })
        .await
    }

    async fn create_session(&self, session: NewSession) -> StoreResult<()> {
        self.write("creating a session", move |c| {
            queries::create_session(c, &session)
        })
        .await
    }

    async fn purge_expired_sessions(&self) -> StoreResult<u64> {
        let now = minigram::app::now_secs();
        self.write("purging expired sessions", move |c| {
            queries::purge_expired_sessions(c, now)
        })
        .await
    }

    async fn session_user(&self, token_hash: [u8; 32]) -> StoreResult<Option<SessionUser>> {
        let now = minigram::app::now_secs();
        self.read("reading a session", move |c| {
            queries::session_user(c, &token_hash, now)
        })
        .await
    }

    async fn revoke_session(&self, token_hash: [u8; 32]) -> StoreResult<bool> {
        self.write("revoking a session", move |c| {
            queries::revoke_session(c, &token_hash)
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
        self.read("reading a profile", move |c| {
            queries::profile(c, viewer, user)
        })
        .await
    }

    async fn my_profile(&self, me: UserId) -> StoreResult<Option<MyProfile>> {
        self.read("reading my profile", move |c| queries::my_profile(c, me))
            .await
    }

    async fn set_follow(
        &self,
        follower: UserId,
        followee: UserId,
        on: bool,
    ) -> StoreResult<FollowState> {
        self.write("following", move |c| {
            queries::set_follow(c, follower, followee, on)
        })
        .await
    }

    async fn insert_photo(&self, photo: NewPhoto) -> StoreResult<Photo> {
        self.write("inserting a photo", move |c| {
            queries::insert_photo(c, photo)
        })
        .await
    }

    async fn photo(&self, viewer: Option<UserId>, photo: PhotoId) -> StoreResult<Option<Photo>> {
        self.read("reading a photo", move |c| queries::photo(c, viewer, photo))
            .await
    }

    async fn set_like(&self, user: UserId, photo: PhotoId, on: bool) -> StoreResult<LikeState> {
        self.write("liking", move |c| queries::set_like(c, user, photo, on))
            .await
    }

    async fn session_feed(
        &self,
        token_hash: [u8; 32],
        page: PageQuery,
    ) -> StoreResult<Option<PhotoPage>> {
        let now = minigram::app::now_secs();
        // One read: the session and its feed on one pooled connection.
        self.read("reading a feed", move |c| {
            match queries::session_user(c, &token_hash, now)? {
                Some(user) => queries::feed(c, user.user_id, page).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn feed(&self, viewer: UserId, page: PageQuery) -> StoreResult<PhotoPage> {
        self.read("reading a feed", move |c| queries::feed(c, viewer, page))
            .await
    }

    async fn explore(&self, viewer: Option<UserId>, page: PageQuery) -> StoreResult<PhotoPage> {
        self.read("reading explore", move |c| {
            queries::explore(c, viewer, page)
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
            queries::user_photos(c, viewer, owner, page)
        })
        .await
    }

    fn figures(&self) -> Vec<Figure> {
        self.saturation_figures()
    }

    async fn import(&self, data: Dataset) -> StoreResult<ImportSummary> {
        self.write_alone("importing a dataset", move |c| import::import(c, &data))
            .await
    }

    // Stage 1 processes every upload in its request.
    type PhotoQueue = NoPhotoQueue;
    fn photo_queue(&self) -> Option<&NoPhotoQueue> {
        None
    }
}

/// The database file inside a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("minigram.sqlite3")
}
