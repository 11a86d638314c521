//! The gates in front of the one SQLite file: a bounded pool of read
//! connections on tokio's blocking pool, and the queue to the one writer.
//!
//! Every query of [`super::queries`] runs through one of them: `read` on a
//! read connection (in WAL mode reads run beside the writer), `write` as a
//! closure inside the writer's transaction, answered once that transaction
//! committed — so an acknowledged write is durable.

use anyhow::Context;
use minigram::store::{StoreError, StoreResult};
use minigram::timing;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::oneshot;

use super::{Inner, SqliteConfig, SqliteStore, Synchronous};
use crate::writer::Write;

/// The migrations, in order; `PRAGMA user_version` counts how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_session_limits.sql"),
];

/// Counters the lab reads besides the writer's ([`crate::writer::WriterStats`]).
#[derive(Debug, Default)]
pub struct SqliteStats {
    /// Calls that failed with SQLITE_BUSY / SQLITE_LOCKED.
    pub busy: AtomicU64,
    /// Total time reads spent running their SQL, in microseconds.
    pub read_us: AtomicU64,
    /// Total time read slots were held (from the gate to the end of the
    /// blocking task), in microseconds: it contains `read_us`.
    pub read_held_us: AtomicU64,
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
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
    /// Runs `f` on a read connection, on the blocking pool.
    pub(super) async fn read<T: Send + 'static>(
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
        let held_since = Instant::now();
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || {
            let _slot = ReaderSlot(&inner, held_since);
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
    pub(super) async fn write<T: Send + 'static>(
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
    pub(super) async fn write_alone<T: Send + 'static>(
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
/// so the verdict judges the readers by the latter. The time a slot is
/// held is counted too (`sqlite.readHeldMs`): a once-a-second sample of
/// the slots in use can miss the reads between samples and read lower
/// than the time-averaged `sqlite.readMs`, which the lab once printed as
/// "held 5.8, reading 6.3".
struct ReaderSlot<'a>(&'a Inner, Instant);

impl Drop for ReaderSlot<'_> {
    fn drop(&mut self) {
        self.0
            .stats
            .read_held_us
            .fetch_add(self.1.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.0.read_gate.add_permits(1);
    }
}

/// A write closure fails with SQLite's error or with a domain outcome.
pub(super) enum WriteError {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

pub(super) fn open_connection(
    config: &SqliteConfig,
    read_only: bool,
) -> anyhow::Result<Connection> {
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

pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
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
