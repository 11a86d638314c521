//! The fan-out workers (`--feed-strategy push|hybrid`): they put each
//! announced photo into the timelines of its owner's followers
//! ([`crate::store::timelines`] says what a timeline is and how a feed
//! reads it).
//!
//! Every process runs `--fanout-workers` tasks, all consumers of one
//! Redis consumer group on the photo stream, so each announcement is
//! fanned out once however many processes run. A worker reads entries
//! with XREADGROUP, writes the timelines, then acknowledges (XACK): an
//! entry whose worker died between reading and XACK stays pending, and
//! after `--fanout-claim-after-ms` another worker takes it over with
//! XAUTOCLAIM and fans it out again (idempotent: the same id into the
//! same sets). So an acknowledged upload reaches every follower's timeline
//! even if a worker is killed mid-way; only its lag grows.
//!
//! Workers poll (no BLOCK): they share the process's multiplexed Redis
//! connections, which a blocking read would hold up for every request.
//! The price is up to [`IDLE_POLL`] of extra fan-out lag when idle.

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::Stage2Store;
use crate::store::timelines::{self, GROUP, Timelines};

/// How long an idle worker waits before reading the stream again.
pub const IDLE_POLL: Duration = Duration::from_millis(20);
/// Entries read (or claimed) at once.
const BATCH: usize = 32;
/// How often a worker looks for entries abandoned by a dead worker, and
/// reads the backlog for the figures.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// Starts this process's fan-out workers (none with `pull`).
pub fn start(store: Stage2Store) {
    let Some(timelines) = store.timelines().cloned() else {
        return;
    };
    let workers = store.config().fanout_workers;
    for n in 0..workers {
        let timelines = Arc::clone(&timelines);
        // Unique per process start: a restarted process is a new consumer,
        // and what the old one left pending is claimed, not lost.
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let me = format!("{}-{started}-{n}", std::process::id());
        tokio::spawn(async move { run(timelines, me).await });
    }
}

async fn run(timelines: Arc<Timelines>, me: String) {
    let mut last_housekeeping = Instant::now() - HOUSEKEEPING_EVERY;
    let mut group_ready = false;
    loop {
        if !group_ready {
            match create_group(&timelines).await {
                Ok(()) => group_ready = true,
                Err(e) => {
                    tracing::warn!(error = %e, "fan-out: stream unreachable");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
            last_housekeeping = Instant::now();
            if let Err(e) = housekeeping(&timelines, &me).await {
                tracing::warn!(error = %e, "fan-out: could not reclaim abandoned entries");
            }
        }
        match read(&timelines, &me).await {
            Ok(entries) if entries.is_empty() => tokio::time::sleep(IDLE_POLL).await,
            Ok(entries) => handle(&timelines, entries).await,
            Err(e) => {
                // The group may be gone with Redis: make it again.
                group_ready = false;
                tracing::warn!(error = %e, "fan-out: stream unreachable");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The consumer group, from the stream's first entry (entries announced
/// before any worker ran are fanned out too). Already there: fine.
async fn create_group(timelines: &Timelines) -> anyhow::Result<()> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(timelines.stream())
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM");
    match timelines.redis().query::<String>(&cmd).await {
        Ok(_) => Ok(()),
        Err(e) if format!("{e:#}").contains("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

/// New entries for this worker.
async fn read(timelines: &Timelines, me: &str) -> anyhow::Result<Vec<StreamId>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(GROUP)
        .arg(me)
        .arg("COUNT")
        .arg(BATCH)
        .arg("STREAMS")
        .arg(timelines.stream())
        .arg(">");
    let reply: Option<StreamReadReply> = timelines.redis().query(&cmd).await?;
    Ok(reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default())
}

/// Fans out each entry and acknowledges it; one that fails stays pending
/// and is claimed again after the claim delay.
async fn handle(timelines: &Timelines, entries: Vec<StreamId>) {
    for entry in entries {
        let done = match timelines::parse(&entry) {
            Some(announced) => timelines.fan_out(announced).await,
            None => {
                tracing::warn!(id = entry.id, "fan-out: malformed entry dropped");
                Ok(())
            }
        };
        match done {
            Ok(()) => {
                let mut ack = redis::cmd("XACK");
                ack.arg(timelines.stream()).arg(GROUP).arg(&entry.id);
                if let Err(e) = timelines.redis().query::<i64>(&ack).await {
                    // Fanned out, not acknowledged: it will be claimed and
                    // fanned out again, which does no harm.
                    tracing::warn!(error = %e, "fan-out: entry not acknowledged");
                }
            }
            Err(e) => tracing::warn!(error = %e, id = entry.id, "fan-out failed; will retry"),
        }
    }
}

/// Claims entries another worker took and did not finish within the
/// claim delay (it died), fans them out, and reads the backlog.
///
/// Claims in batches until the scan has passed every pending entry: a
/// killed process can leave a worker's whole batch pending, and taking one
/// batch a second would stretch the lag of the rest for no reason.
async fn housekeeping(timelines: &Timelines, me: &str) -> anyhow::Result<()> {
    let mut cursor = "0-0".to_owned();
    loop {
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim
            .arg(timelines.stream())
            .arg(GROUP)
            .arg(me)
            .arg(timelines.claim_after.as_millis() as u64)
            .arg(&cursor)
            .arg("COUNT")
            .arg(BATCH);
        let claimed: StreamAutoClaimReply = timelines.redis().query(&claim).await?;
        if !claimed.claimed.is_empty() {
            tracing::info!(
                entries = claimed.claimed.len(),
                "fan-out: took over entries of a worker that stopped"
            );
            handle(timelines, claimed.claimed).await;
        }
        // "0-0": the scan has wrapped around the pending list.
        if claimed.next_stream_id == "0-0" {
            break;
        }
        cursor = claimed.next_stream_id;
    }
    // Entries not yet delivered to any worker (lag) plus those delivered
    // and not acknowledged (pending).
    let mut info = redis::cmd("XINFO");
    info.arg("GROUPS").arg(timelines.stream());
    let groups: Vec<std::collections::HashMap<String, redis::Value>> =
        timelines.redis().query(&info).await?;
    let backlog = groups
        .iter()
        .find(|g| matches!(g.get("name"), Some(v) if redis::from_redis_value_ref::<String>(v).ok().as_deref() == Some(GROUP)))
        .map(|g| {
            let n = |k: &str| {
                g.get(k)
                    .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
                    .unwrap_or(0)
            };
            n("lag") + n("pending")
        })
        .unwrap_or(0);
    timelines.set_backlog(backlog);
    Ok(())
}
