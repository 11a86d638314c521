//! The photo queue (`--photo-processing queue`): what the queue experiment
//! adds to stage 2. Without it, every upload is decoded and re-encoded in
//! its request.
//!
//! An upload in queue mode commits a `processing` row and LPUSHes its id
//! on a Redis list in the state Redis; the workers of every process
//! ([`crate::worker`]) RPOP ids (FIFO), process the image and record the
//! outcome in Postgres. Postgres, not Redis, is the record: a job lost with
//! Redis is found again by [`PhotoQueue::stale_processing`].

use minigram::domain::PhotoId;
use minigram::store::{PhotoStatus, StoreError, StoreResult};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::postgres::{Postgres, now_ms};
use super::redis_pool::RedisPool;
use super::{Stage2Config, Stage2Stats};

pub struct PhotoQueue {
    redis: RedisPool,
    db: Postgres,
    /// The Redis list of queued photo ids (LPUSH in, RPOP out: FIFO).
    key: String,
    /// Queued photos at most; past it an upload is refused with 503.
    max: u64,
    /// Worker tasks per process.
    pub workers: usize,
    stats: Arc<Stage2Stats>,
}

impl minigram::store::PhotoQueue for PhotoQueue {
    async fn is_full(&self) -> StoreResult<bool> {
        let depth: i64 = self
            .redis
            .query(redis::cmd("LLEN").arg(&self.key))
            .await
            .map_err(StoreError::Unavailable)?;
        self.stats.photo_queue_depth.store(depth, Ordering::Relaxed);
        Ok(depth as u64 >= self.max)
    }

    async fn enqueue(&self, photo: PhotoId) -> StoreResult<()> {
        self.requeue(&[photo])
            .await
            .map_err(StoreError::Unavailable)
    }
}

impl PhotoQueue {
    pub fn new(
        config: &Stage2Config,
        redis: RedisPool,
        db: Postgres,
        stats: Arc<Stage2Stats>,
    ) -> Self {
        Self {
            redis,
            db,
            key: format!("{}:photoq", config.redis_prefix),
            max: config.photo_queue_max,
            workers: config.photo_workers.max(1),
            stats,
        }
    }

    /// The oldest queued photo, if any, and how many wait (one round trip).
    pub async fn next_job(&self) -> anyhow::Result<Option<PhotoId>> {
        let mut pipe = redis::pipe();
        pipe.cmd("RPOP").arg(&self.key).cmd("LLEN").arg(&self.key);
        let (id, depth): (Option<i64>, i64) = self.redis.pipe(&pipe).await?;
        self.stats.photo_queue_depth.store(depth, Ordering::Relaxed);
        Ok(id.map(PhotoId))
    }

    /// Queues photos (again, for the sweep's lost jobs), in one round trip.
    pub async fn requeue(&self, photos: &[PhotoId]) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        for id in photos {
            pipe.cmd("LPUSH").arg(&self.key).arg(id.0).ignore();
        }
        self.redis.pipe::<()>(&pipe).await
    }

    /// Counts a processed photo and its upload-to-ready lag
    /// (`uploaded_at`: unix ms).
    pub fn record_processed(&self, uploaded_at: i64) {
        self.stats.photos_processed.fetch_add(1, Ordering::Relaxed);
        let lag = (now_ms() - uploaded_at).max(0) as u64;
        self.stats.photo_lag_ms.store(lag, Ordering::Relaxed);
    }

    /// (owner, file name, upload time) of a photo that is still processing.
    pub async fn processing_photo(&self, id: PhotoId) -> StoreResult<Option<(i64, String, i64)>> {
        self.db
            .run(
                "reading a queued photo",
                sqlx::query_as::<_, (i64, String, i64)>(
                    "SELECT user_id, file_name, created_at FROM photos
                 WHERE id = $1 AND status = 'processing'",
                )
                .bind(id.0)
                .fetch_optional(self.db.pool()),
            )
            .await
    }

    /// Records the worker's outcome; false if another worker already did.
    pub async fn finish_photo(
        &self,
        id: PhotoId,
        status: PhotoStatus,
        width: u32,
        height: u32,
    ) -> StoreResult<bool> {
        let done = self
            .db
            .run(
                "finishing a queued photo",
                sqlx::query(
                    "UPDATE photos SET status = $2, width = $3, height = $4
                     WHERE id = $1 AND status = 'processing'",
                )
                .bind(id.0)
                .bind(status.as_str())
                .bind(width as i32)
                .bind(height as i32)
                .execute(self.db.pool()),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Photos still processing `age` after their upload (at most 1000).
    pub async fn stale_processing(&self, age: Duration) -> StoreResult<Vec<PhotoId>> {
        let ids = self
            .db
            .run(
                "finding lost photo jobs",
                sqlx::query_scalar::<_, i64>(
                    "SELECT id FROM photos WHERE status = 'processing' AND created_at < $1
                     ORDER BY id LIMIT 1000",
                )
                .bind(now_ms() - age.as_millis() as i64)
                .fetch_all(self.db.pool()),
            )
            .await?;
        Ok(ids.into_iter().map(PhotoId).collect())
    }
}
