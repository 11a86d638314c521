//! Stage 1's one SQLite writer: a thread that owns the write connection and
//! commits the writes queued for it, one by one or in groups.
//!
//! SQLite allows one writer at a time, and with `synchronous = FULL` every
//! commit waits for an fsync. Committing each request alone caps the
//! writes per second at the disk's synced-write rate divided by what else
//! a commit costs. **Group commit** (`--group-commit on`) takes every write
//! waiting when the writer is free (up to `--group-commit-max` and for at
//! most `--group-commit-wait-us` more), runs them in one `BEGIN IMMEDIATE`
//! transaction with a savepoint each, and commits once: one fsync for the
//! whole group. A write that fails (a constraint, a missing row) rolls back
//! only its own savepoint and gets its own answer. Nobody is answered
//! before the group's COMMIT has returned, so an acknowledged write is
//! durable exactly as before; if the COMMIT fails, every write in the
//! group gets the error.
//!
//! Writers wait in a channel without holding a thread; the time from
//! queueing to running is the "write wait" the lab reports. Jobs that need
//! the bare connection (DDL with a checkpoint, a dataset import in its own
//! transaction) run alone, between groups.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How the writer groups commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// Writes in one transaction at most (1: every write commits alone).
    pub max_batch: usize,
    /// How long the writer waits for more writes once it has one, when
    /// fewer than `max_batch` are queued. Zero: it takes what is queued.
    pub wait: Duration,
}

impl GroupCommit {
    /// Every write its own transaction and fsync (`--group-commit off`).
    pub const OFF: Self = Self {
        max_batch: 1,
        wait: Duration::ZERO,
    };

    /// `--group-commit on` with its default bound and no wait: under load
    /// the writes queued while one commit fsyncs make the next group, so
    /// waiting longer buys little and costs every write its wait.
    pub const DEFAULT: Self = Self {
        max_batch: 64,
        wait: Duration::ZERO,
    };
}

/// What the writer counts, read by the store's figures.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Total time writes waited for the writer, in microseconds.
    pub write_wait_us: AtomicU64,
    /// Writes that ran (committed or answered with their own failure).
    pub writes: AtomicU64,
    /// Transactions committed (one per group).
    pub commits: AtomicU64,
    /// Writes queued for the writer right now.
    pub waiting: AtomicI64,
    /// Writes in the largest group committed so far.
    pub largest_batch: AtomicU64,
    /// Mean writes per commit over the last whole second with a commit,
    /// in thousandths (an f64 would need a lock or bit tricks).
    pub recent_batch_milli: AtomicU64,
}

/// Accumulates one second of groups in the writer thread and publishes
/// their mean size when the second is over.
struct BatchMeter {
    since: Instant,
    writes: u64,
    commits: u64,
}

impl BatchMeter {
    fn committed(&mut self, writes: usize, stats: &WriterStats) {
        self.writes += writes as u64;
        self.commits += 1;
        if self.since.elapsed() >= Duration::from_secs(1) {
            stats
                .recent_batch_milli
                .store(self.writes * 1000 / self.commits, Ordering::Relaxed);
            *self = Self::new();
        }
    }

    fn new() -> Self {
        Self {
            since: Instant::now(),
            writes: 0,
            commits: 0,
        }
    }
}

/// One queued write. `run` executes it inside the group's transaction and
/// says whether it succeeded (a failure rolls back its own savepoint);
/// `answer` is called once the group's COMMIT returned, with the commit's
/// error if it failed (then the write is not durable) — or, for a write
/// that never ran because its transaction could not start, with that error.
pub trait Write: Send {
    fn run(&mut self, conn: &Connection) -> bool;
    fn answer(self: Box<Self>, commit: Option<&rusqlite::Error>);
}

struct Queued {
    at: Instant,
    write: Box<dyn Write>,
}

enum Job {
    Write(Queued),
    /// Needs the connection outside any transaction.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// The handle the store queues writes with. Dropping every handle ends the
/// writer thread once the queue is empty.
#[derive(Clone)]
pub struct Writer {
    queue: Sender<Job>,
    stats: Arc<WriterStats>,
}

/// The writer thread is gone (it panicked outside a job): no write can run.
#[derive(Debug, thiserror::Error)]
#[error("the SQLite writer thread has stopped")]
pub struct WriterGone;

impl Writer {
    /// Starts the writer thread on `conn` (migrated, configured).
    pub fn start(conn: Connection, group: GroupCommit) -> std::io::Result<Self> {
        let (queue, jobs) = std::sync::mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, jobs, group, &thread_stats))?;
        Ok(Self { queue, stats })
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Queues a write; its reply is called after its group's commit.
    pub fn queue(&self, write: Box<dyn Write>) -> Result<(), WriterGone> {
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let job = Job::Write(Queued {
            at: Instant::now(),
            write,
        });
        self.queue.send(job).map_err(|_| {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            WriterGone
        })
    }

    /// Runs `f` on the bare connection between groups and waits for it
    /// (blocking: for startup and imports, not for requests).
    pub fn alone<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> Result<T, WriterGone> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.queue
            .send(Job::Alone(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            })))
            .map_err(|_| WriterGone)?;
        rx.recv().map_err(|_| WriterGone)
    }
}

fn run(mut conn: Connection, jobs: Receiver<Job>, group: GroupCommit, stats: &WriterStats) {
    let mut next: Option<Job> = None;
    let mut meter = BatchMeter::new();
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let first = match first {
            Job::Alone(f) => {
                // A panic here must not stop the writer for everyone.
                let _ = catch_unwind(AssertUnwindSafe(|| f(&mut conn)));
                rollback_if_open(&conn);
                continue;
            }
            Job::Write(w) => w,
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + group.wait;
        while batch.len() < group.max_batch {
            let more = match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => jobs.recv_timeout(left).map_err(|e| match e {
                    RecvTimeoutError::Timeout => TryRecvError::Empty,
                    RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
                }),
                _ => jobs.try_recv(),
            };
            match more {
                Ok(Job::Write(w)) => batch.push(w),
                // Runs after this group.
                Ok(alone) => {
                    next = Some(alone);
                    break;
                }
                Err(_) => break,
            }
        }
        commit_group(&conn, batch, stats, &mut meter);
    }
}

/// Runs `batch` in one transaction and answers each write after COMMIT.
fn commit_group(
    conn: &Connection,
    batch: Vec<Queued>,
    stats: &WriterStats,
    meter: &mut BatchMeter,
) {
    let now = Instant::now();
    stats
        .waiting
        .fetch_sub(batch.len() as i64, Ordering::Relaxed);
    let waited: u128 = batch
        .iter()
        .map(|q| now.duration_since(q.at).as_micros())
        .sum();
    stats
        .write_wait_us
        .fetch_add(waited as u64, Ordering::Relaxed);
    let mut batch: Vec<Box<dyn Write>> = batch.into_iter().map(|q| q.write).collect();
    while !batch.is_empty() {
        batch = commit_some(conn, batch, stats, meter);
    }
}

/// Commits as many of `batch` as one transaction holds and returns the
/// rest: the writes after one whose error ended the transaction itself
/// (SQLite rolls back the whole transaction on a few errors, e.g. a full
/// disk); they run in the next transaction.
fn commit_some(
    conn: &Connection,
    batch: Vec<Box<dyn Write>>,
    stats: &WriterStats,
    meter: &mut BatchMeter,
) -> Vec<Box<dyn Write>> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        for write in batch {
            write.answer(Some(&e));
        }
        return Vec::new();
    }
    // A write alone needs no savepoint: its transaction is its own.
    let alone = batch.len() == 1;
    let mut done: Vec<Box<dyn Write>> = Vec::with_capacity(batch.len());
    let mut rest = batch.into_iter();
    let mut all_ok = true;
    let mut broken: Option<rusqlite::Error> = None;
    for mut write in rest.by_ref() {
        if !alone && let Err(e) = conn.execute_batch("SAVEPOINT write") {
            broken = Some(e);
            done.push(write);
            break;
        }
        stats.writes.fetch_add(1, Ordering::Relaxed);
        // A panicking write fails alone; its answer says so.
        let ok = catch_unwind(AssertUnwindSafe(|| write.run(conn))).unwrap_or(false);
        done.push(write);
        all_ok &= ok;
        if conn.is_autocommit() {
            // The write's error ended the transaction: the writes before
            // it in this group were rolled back with it.
            broken = Some(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the group's transaction was rolled back by one of its writes".into()),
            ));
            break;
        }
        if !alone {
            let end = if ok {
                "RELEASE write"
            } else {
                "ROLLBACK TO write; RELEASE write"
            };
            if let Err(e) = conn.execute_batch(end) {
                broken = Some(e);
                break;
            }
        }
    }
    let rest: Vec<Box<dyn Write>> = rest.collect();
    let outcome = match broken {
        Some(e) => Err(e),
        // A write alone that failed rolls back instead of committing.
        None if alone && !all_ok => conn.execute_batch("ROLLBACK"),
        None => conn.execute_batch("COMMIT").inspect(|()| {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .largest_batch
                .fetch_max(done.len() as u64, Ordering::Relaxed);
            meter.committed(done.len(), stats);
        }),
    };
    rollback_if_open(conn);
    // A failed ROLLBACK of a write alone leaves nothing to undo: the
    // write failed, and that is what it answers.
    let failed = match (&outcome, alone && !all_ok) {
        (Err(e), false) => Some(e),
        _ => None,
    };
    for write in done {
        write.answer(failed);
    }
    rest
}

fn rollback_if_open(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}
