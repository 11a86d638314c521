//! Stage 1's saturation figures, read every second by the metrics: the
//! one writer's queue and commits, SQLITE_BUSY, and the read connections.

use minigram::figure_keys as keys;
use minigram::telemetry::Figure;
use std::sync::atomic::Ordering;

use super::SqliteStore;

impl SqliteStore {
    pub(super) fn saturation_figures(&self) -> Vec<Figure> {
        let st = &self.inner.stats;
        let w = self.inner.writer.stats();
        let readers_busy =
            self.inner.config.max_readers.max(1) - self.inner.read_gate.available_permits();
        vec![
            Figure::gauge(
                keys::SQLITE_WRITERS_WAITING,
                "SQLite writes waiting for the one writer",
                "minigram_sqlite_writers_waiting",
                w.waiting.load(Ordering::Relaxed) as f64,
            ),
            Figure::counter(
                keys::SQLITE_WRITE_WAIT_MS,
                "SQLite lock wait: ms writes spent queued",
                "minigram_sqlite_write_wait_milliseconds_total",
                w.write_wait_us.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            Figure::counter(
                keys::SQLITE_WRITES,
                "SQLite writes (requests' write transactions or savepoints)",
                "minigram_sqlite_writes_total",
                w.writes.load(Ordering::Relaxed) as f64,
            ),
            Figure::counter(
                keys::SQLITE_COMMITS,
                "SQLite commits (one per group of writes)",
                "minigram_sqlite_commits_total",
                w.commits.load(Ordering::Relaxed) as f64,
            ),
            Figure::gauge(
                keys::SQLITE_BATCH_SIZE,
                "SQLite writes per commit (mean over the last second)",
                "minigram_sqlite_writes_per_commit",
                w.recent_batch_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            Figure::gauge(
                keys::SQLITE_LARGEST_BATCH,
                "SQLite writes in the largest commit so far",
                "minigram_sqlite_largest_commit_writes",
                w.largest_batch.load(Ordering::Relaxed) as f64,
            ),
            Figure::counter(
                keys::SQLITE_BUSY,
                "SQLITE_BUSY / LOCKED errors",
                "minigram_sqlite_busy_total",
                st.busy.load(Ordering::Relaxed) as f64,
            ),
            Figure::counter(
                keys::SQLITE_READ_MS,
                "SQLite reads: ms spent running SQL (per second: connections truly reading)",
                "minigram_sqlite_read_milliseconds_total",
                st.read_us.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            Figure::counter(
                keys::SQLITE_READ_HELD_MS,
                "SQLite reads: ms read connections were held (per second: connections held)",
                "minigram_sqlite_read_held_milliseconds_total",
                st.read_held_us.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            Figure::gauge(
                keys::SQLITE_READERS_BUSY,
                "SQLite read connections in use",
                "minigram_sqlite_readers_in_use",
                readers_busy as f64,
            ),
        ]
    }
}
