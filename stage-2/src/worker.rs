//! The background photo worker (`--photo-processing queue`).
//!
//! An upload in queue mode stores the raw bytes durably, commits a
//! `processing` photo row and LPUSHes its id on a Redis list; it answers
//! 202 without decoding anything. Each stage-2 process runs
//! `--photo-workers` tasks that RPOP ids (FIFO), decode, bound, downscale
//! and re-encode the image (`images::process_queued`) on the process's
//! image pool (`image_pool`, shared with the uploads' header checks, so
//! image memory stays bounded however many workers run), mark the row
//! `ready` (or `failed`), announce it to the timelines (if any) and drop
//! the cached feeds that now show it. A failure to
//! drop them (Redis briefly unreachable) is retried until it succeeds or
//! the cached feeds have expired by themselves, not left stale.
//!
//! Postgres, not Redis, is the record: Redis runs without persistence in
//! this lab, so a job can be lost with it, and a worker can be killed
//! mid-job. A sweep re-queues photos still `processing` after
//! [`SWEEP_AFTER`] whenever the queue is empty. Processing is idempotent
//! (content-addressed file, `UPDATE … WHERE status = 'processing'`), so a
//! job that runs twice does no harm. Acknowledged uploads are never lost;
//! they may become visible late.

use minigram::domain::{PhotoId, UserId};
use minigram::image_pool::{ImagePool, ImagePoolError};
use minigram::images::{self, QueuedOutcome};
use minigram::store::{PhotoStatus, Store};
use std::path::PathBuf;
use std::time::Duration;

use crate::store::{PhotoQueue, Stage2Store};

/// How long to sleep when the queue is empty.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// A photo still processing this long after its upload, with the queue
/// empty, was lost from the queue: queue it again.
pub const SWEEP_AFTER: Duration = Duration::from_secs(30);
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How long to wait for room on a full image pool before trying again.
const POOL_FULL_WAIT: Duration = Duration::from_millis(100);

/// Starts the workers of this process (none without a photo queue); they
/// run until the process exits.
pub fn start(store: Stage2Store, uploads: PathBuf, images: ImagePool) {
    let Some(queue) = store.photo_queue() else {
        return;
    };
    for n in 0..queue.workers {
        let (store, uploads, images) = (store.clone(), uploads.clone(), images.clone());
        tokio::spawn(async move { run(store, uploads, images, n == 0).await });
    }
}

async fn run(store: Stage2Store, uploads: PathBuf, images: ImagePool, sweeper: bool) {
    let Some(queue) = store.photo_queue() else {
        return;
    };
    let mut last_sweep = std::time::Instant::now();
    loop {
        match queue.next_job().await {
            Ok(Some(id)) => {
                if let Err(e) = process(&store, queue, &uploads, &images, id).await {
                    tracing::warn!(photo = id.0, error = %e, "photo processing failed; the sweep will retry");
                }
            }
            Ok(None) => {
                if sweeper && last_sweep.elapsed() >= SWEEP_EVERY {
                    last_sweep = std::time::Instant::now();
                    if let Err(e) = sweep(queue).await {
                        tracing::warn!(error = %e, "photo sweep failed");
                    }
                }
                tokio::time::sleep(IDLE_POLL).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "photo queue unreachable");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Processes one queued photo; a photo that is no longer `processing`
/// (done by another worker) is skipped.
pub async fn process(
    store: &Stage2Store,
    queue: &PhotoQueue,
    uploads: &std::path::Path,
    images: &ImagePool,
    id: PhotoId,
) -> anyhow::Result<()> {
    let Some((owner, file_name, created_at)) = queue.processing_photo(id).await? else {
        return Ok(());
    };
    // The job is ours until it is done: a full pool means wait, not drop.
    let outcome = loop {
        let (dir, name) = (uploads.to_owned(), file_name.clone());
        match images
            .run(move || images::process_queued(&dir, &name))
            .await
        {
            Ok(outcome) => break outcome?,
            Err(ImagePoolError::Saturated) => tokio::time::sleep(POOL_FULL_WAIT).await,
            Err(e) => return Err(e.into()),
        }
    };
    let (status, width, height) = match outcome {
        QueuedOutcome::Ready { width, height } => (PhotoStatus::Ready, width, height),
        QueuedOutcome::Failed(e) => {
            tracing::info!(photo = id.0, error = %e, "a queued upload is not a decodable image");
            (PhotoStatus::Failed, 0, 0)
        }
    };
    if queue.finish_photo(id, status, width, height).await? && status == PhotoStatus::Ready {
        visible_until_done(store, UserId(owner), id).await?;
    }
    queue.record_processed(created_at);
    Ok(())
}

/// Announces a new photo to the timelines and drops the cached feeds that
/// now show it, retrying while Redis is
/// unreachable: the photo is already `ready` in Postgres, so no later job
/// or sweep would drop them. After the cache's TTL (plus jitter) a cached
/// feed has expired by itself, so retrying longer than that is pointless.
async fn visible_until_done(
    store: &Stage2Store,
    owner: UserId,
    photo: PhotoId,
) -> anyhow::Result<()> {
    let give_up =
        std::time::Instant::now() + store.config().feed_cache_ttl + crate::store::TTL_JITTER;
    let mut wait = Duration::from_millis(100);
    loop {
        match store.photo_visible(owner, photo).await {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() + wait < give_up => {
                tracing::warn!(owner = owner.0, error = %e, "feeds not invalidated yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Re-queues photos still processing long after their upload, when the
/// queue is empty (their job was lost).
async fn sweep(queue: &PhotoQueue) -> anyhow::Result<()> {
    let lost = queue.stale_processing(SWEEP_AFTER).await?;
    if !lost.is_empty() {
        tracing::warn!(photos = lost.len(), "re-queueing photos whose job was lost");
        queue.requeue(&lost).await?;
    }
    Ok(())
}
