//! Read replicas (`--read-replica URL`, repeatable): Postgres standbys fed
//! by streaming replication, which take the reads that may be a little
//! old (explore, profiles, photos, the feed without the cache) off the
//! primary. Writes, sign-in and everything the feed cache stores are read
//! from the primary.
//!
//! A replica replays the primary's WAL a little late. Two rules keep that
//! honest:
//! - **Read-your-writes.** After a person's write commits, the store
//!   records the primary's WAL position for them (in the state Redis, read
//!   back with their session: see `sessions.rs`); a request raises its
//!   read floor to it (`minigram::read_floor`), and a replica that has not
//!   replayed that far is passed over for the primary. So the writer's
//!   next reads see the write, whichever process serves them.
//! - **Bounded staleness for everyone else.** Others may read a replica
//!   that has not replayed a write yet: late by at most its lag, and a
//!   replica more than `replica_max_lag` behind is not read at all.
//!
//! A poller asks the primary for its WAL position and each replica for the
//! position it has replayed, every `replica_poll`: from that come the
//! routing decisions (a replica's replayed position only grows, so an old
//! reading is a safe lower bound) and the lag figures (bytes and seconds,
//! per replica) on the live page and in Prometheus. A replica that fails a
//! read or a poll is marked down and its reads go to the others or the
//! primary (the failed read is retried there: no 5xx); the next poll that
//! reaches it brings it back.

use minigram::telemetry::Figure;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{InFlight, Stage2Config, server_of};

/// The replicas of one process and what the poller last saw of them.
pub struct Replicas {
    list: Vec<Replica>,
    /// Round-robin start among the replicas a read may use.
    next: AtomicUsize,
    max_lag: Duration,
    /// Reads sent to the primary because no replica had replayed the
    /// reader's own last write yet.
    pub behind_floor: AtomicU64,
    /// Reads sent to the primary because every replica was down, too far
    /// behind or busy.
    pub none_usable: AtomicU64,
    /// Reads that failed on a replica and were answered by the primary.
    pub retried: AtomicU64,
}

/// One replica: its pool, its gate and the poller's last reading.
pub struct Replica {
    pub server: String,
    pool: PgPool,
    /// Calls that may hold or wait for one of its connections at once.
    limit: i64,
    in_flight: AtomicI64,
    up: AtomicBool,
    /// The WAL position it had replayed at the last poll.
    replayed: AtomicU64,
    lag_bytes: AtomicU64,
    lag_ms: AtomicU64,
    reads: AtomicU64,
    keys: &'static ReplicaKeys,
}

/// The figure keys and labels of one replica, made once at start-up (a
/// process has a fixed, small number of replicas).
struct ReplicaKeys {
    lag_bytes: &'static str,
    lag_ms: &'static str,
    up: &'static str,
    reads: &'static str,
    labels: &'static [(&'static str, &'static str)],
}

/// A read's turn on a replica: counted in flight while it lives.
pub struct ReplicaRead<'a> {
    pub replica: &'a Replica,
    _in_flight: InFlight<'a>,
}

impl Replicas {
    /// One pool per replica, connected lazily: a replica down at start-up
    /// does not stop the process; it is used once a poll reaches it.
    pub fn new(config: &Stage2Config) -> anyhow::Result<Option<Arc<Self>>> {
        if config.read_replicas.is_empty() {
            return Ok(None);
        }
        let mut list = Vec::new();
        for (i, url) in config.read_replicas.iter().enumerate() {
            let pool = PgPoolOptions::new()
                .max_connections(config.pg_pool_size.max(1))
                // A replica that cannot be reached is worth less than a
                // fast answer from the primary.
                .acquire_timeout(config.acquire_timeout.min(Duration::from_millis(500)))
                .test_before_acquire(false)
                .connect_lazy(url)
                .map_err(|e| anyhow::anyhow!("--read-replica {}: {e}", server_of(url)))?;
            let n = i + 1;
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            let server = server_of(url);
            let keys = Box::leak(Box::new(ReplicaKeys {
                lag_bytes: leak(format!("replica{n}.lagBytes")),
                lag_ms: leak(format!("replica{n}.lagMs")),
                up: leak(format!("replica{n}.up")),
                reads: leak(format!("replica{n}.reads")),
                labels: Box::leak(Box::new([("replica", leak(server.clone()))])),
            }));
            list.push(Replica {
                server,
                pool,
                limit: i64::from(config.pg_pool_size.max(1)) + i64::from(config.pool_queue_max),
                in_flight: AtomicI64::new(0),
                up: AtomicBool::new(false),
                replayed: AtomicU64::new(0),
                lag_bytes: AtomicU64::new(0),
                lag_ms: AtomicU64::new(0),
                reads: AtomicU64::new(0),
                keys,
            });
        }
        Ok(Some(Arc::new(Self {
            list,
            next: AtomicUsize::new(0),
            max_lag: config.replica_max_lag,
            behind_floor: AtomicU64::new(0),
            none_usable: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        })))
    }

    /// A replica that may serve a read whose floor is `floor` (0: any
    /// replayed position will do), taking turns among those that qualify;
    /// `None` sends the read to the primary.
    pub fn pick(&self, floor: u64) -> Option<ReplicaRead<'_>> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut behind = false;
        for i in 0..n {
            let r = &self.list[(start + i) % n];
            if !r.up.load(Ordering::Relaxed)
                || r.lag_ms.load(Ordering::Relaxed) > self.max_lag.as_millis() as u64
            {
                continue;
            }
            if r.replayed.load(Ordering::Relaxed) < floor {
                behind = true;
                continue;
            }
            if let Some(in_flight) = InFlight::join(&r.in_flight, r.limit) {
                r.reads.fetch_add(1, Ordering::Relaxed);
                return Some(ReplicaRead {
                    replica: r,
                    _in_flight: in_flight,
                });
            }
        }
        let why = if behind {
            &self.behind_floor
        } else {
            &self.none_usable
        };
        why.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Starts the poller; it ends when the store is dropped.
    pub fn start_poller(self: &Arc<Self>, primary: PgPool, every: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                this.poll(&primary).await;
                drop(this);
                tokio::time::sleep(every).await;
            }
        });
    }

    /// One reading of the primary's WAL position and each replica's
    /// replayed position. Taken in that order, so a replica that has
    /// replayed what the primary had written shows no lag.
    pub async fn poll(&self, primary: &PgPool) {
        let written =
            sqlx::query_scalar::<_, String>("SELECT pg_current_wal_lsn()::text").fetch_one(primary);
        let written = match tokio::time::timeout(Duration::from_secs(1), written).await {
            Ok(Ok(lsn)) => parse_lsn(&lsn),
            _ => None, // the primary's own trouble is the pools' to report
        };
        for r in &self.list {
            let reading = sqlx::query_as::<_, (Option<String>, Option<f64>)>(
                "SELECT pg_last_wal_replay_lsn()::text,
                        EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8",
            )
            .fetch_one(&r.pool);
            match tokio::time::timeout(Duration::from_secs(1), reading).await {
                Ok(Ok((Some(lsn), age))) => {
                    let replayed = parse_lsn(&lsn).unwrap_or(0);
                    // A restarted replica may come back earlier than it
                    // was: store what it says now, not the larger of both.
                    r.replayed.store(replayed, Ordering::Relaxed);
                    let behind = written.map_or(0, |w| w.saturating_sub(replayed));
                    r.lag_bytes.store(behind, Ordering::Relaxed);
                    // Seconds since the last transaction it replayed, while
                    // it is behind; none when it has caught up (the age
                    // alone would grow on an idle primary).
                    let ms = if behind == 0 {
                        0
                    } else {
                        (age.unwrap_or(0.0).max(0.0) * 1e3) as u64
                    };
                    r.lag_ms.store(ms, Ordering::Relaxed);
                    if !r.up.swap(true, Ordering::Relaxed) {
                        tracing::info!(replica = %r.server, "read replica in service");
                    }
                }
                Ok(Ok((None, _))) => {
                    if r.up.swap(false, Ordering::Relaxed) {
                        tracing::warn!(replica = %r.server, "not a replica (not in recovery): not used");
                    }
                }
                Ok(Err(_)) | Err(_) => r.down("its poll failed"),
            }
        }
    }

    /// Every replica's figures, plus where reads went instead.
    pub fn figures(&self) -> Vec<Figure> {
        use minigram::figure_keys as keys;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut out = Vec::with_capacity(self.list.len() * 4 + 3);
        for r in &self.list {
            let k = r.keys;
            let up = f64::from(u8::from(r.up.load(Ordering::Relaxed)));
            let gauges = [
                (
                    k.lag_bytes,
                    "Replication lag (bytes of WAL not yet replayed)",
                    "minigram_replica_lag_bytes",
                    load(&r.lag_bytes),
                ),
                (
                    k.lag_ms,
                    "Replication lag (ms behind, while behind)",
                    "minigram_replica_lag_milliseconds",
                    load(&r.lag_ms),
                ),
                (
                    k.up,
                    "Replica in service (1) or passed over (0)",
                    "minigram_replica_up",
                    up,
                ),
            ];
            for (key, title, metric, value) in gauges {
                out.push(Figure::gauge(key, title, metric, value).labels(k.labels));
            }
            out.push(
                Figure::counter(
                    k.reads,
                    "Reads served by the replica",
                    "minigram_replica_reads_total",
                    load(&r.reads),
                )
                .labels(k.labels),
            );
        }
        let fallbacks = [
            (
                keys::REPLICA_BEHIND_FLOOR,
                "Reads sent to the primary: no replica had the reader's own write yet",
                &self.behind_floor,
                &[("reason", "own_write")],
            ),
            (
                keys::REPLICA_NONE_USABLE,
                "Reads sent to the primary: every replica down, too far behind or busy",
                &self.none_usable,
                &[("reason", "none_usable")],
            ),
            (
                keys::REPLICA_RETRIED,
                "Reads that failed on a replica and were answered by the primary",
                &self.retried,
                &[("reason", "retried")],
            ),
        ];
        for (key, title, count, labels) in fallbacks {
            out.push(
                Figure::counter(key, title, "minigram_replica_fallbacks_total", load(count))
                    .labels(labels),
            );
        }
        out
    }
}

impl Replica {
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Takes the replica out of service until a poll reaches it again.
    pub fn down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(replica = %self.server, why, "read replica out of service");
        }
    }
}

/// A WAL position as Postgres prints it (`16/B374D848`) as one number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::parse_lsn;

    #[test]
    fn wal_positions_read_as_numbers_in_order() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert!(parse_lsn("1/0") > parse_lsn("0/FFFFFFFF"));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("G/0"), None);
    }
}
