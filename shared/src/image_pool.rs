//! Image work (decode, downscale, re-encode; stage 2's header probe and
//! queued worker too) runs on a pool of its own: a fixed number of
//! threads and a bounded queue. When the queue is full an upload is
//! answered `503 overloaded` with Retry-After at once.
//!
//! Why not actix's blocking pool (`web::block`): it has hundreds of
//! threads and no bound of its own, so a burst of uploads decoded all at
//! once. Eight parallel uploads of a small single-colour PNG of 8192 × 8192
//! pixels (~200 MiB each decoded) pushed stage 1 past 1.5 GiB and the
//! kernel killed it; stage 1's SQLite reads also queue on that pool.
//!
//! Together with the limits in [`crate::images`] this bounds the memory of
//! image work: each running job decodes at most [`crate::images::MAX_PIXELS`]
//! pixels into at most [`crate::images::MAX_DECODE_ALLOC`] bytes, so image work
//! never holds more than `threads × MAX_DECODE_ALLOC` of pixels (256 MiB
//! with the default two threads on two cores), plus the encoded inputs of
//! the jobs running or queued: copies of request bodies, which
//! [`crate::body`] bounds (64 MiB by default) until their requests end.
//!
//! Like the password hasher, a job whose request has already gone (timed
//! out, client left) is skipped when a thread reaches it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

use crate::job_threads;

/// Why a job did not run.
#[derive(Debug, thiserror::Error)]
pub enum ImagePoolError {
    /// Every thread is busy and the queue is full: shed (503).
    #[error("image processing is saturated")]
    Saturated,
    /// A job panicked, or the threads are gone.
    #[error("an image worker failed")]
    Failed,
}

type Job = job_threads::Job<()>;

/// The pool; cheap to clone (all clones share the threads).
#[derive(Clone)]
pub struct ImagePool {
    inner: Arc<Inner>,
}

struct Inner {
    /// A std sync channel: `try_send` fails at once when `queue` jobs wait.
    jobs: mpsc::SyncSender<Job>,
    threads: usize,
    queue: usize,
    /// Jobs waiting or running.
    in_flight: AtomicUsize,
}

impl std::fmt::Debug for ImagePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagePool")
            .field("threads", &self.inner.threads)
            .field("queue", &self.inner.queue)
            .finish()
    }
}

impl ImagePool {
    /// `threads` jobs run at once; `queue` more may wait.
    pub fn new(threads: usize, queue: usize) -> anyhow::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        job_threads::spawn("image", threads, rx)?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: tx,
                threads,
                queue,
                in_flight: AtomicUsize::new(0),
            }),
        })
    }

    /// Jobs waiting or running now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Runs `work` on a pool thread, or refuses at once when the pool is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ImagePoolError> {
        let (tx, rx) = oneshot::channel();
        let inner = Arc::clone(&self.inner);
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let counted = Arc::clone(&inner);
        let job: Job = Box::new(move |_: &mut ()| {
            let done = job_threads::Leaving(&counted.in_flight);
            if tx.is_closed() {
                return; // nobody waits for this any more
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            // Counted out before the answer: whoever gets it sees the pool
            // without this job.
            drop(done);
            let _ = tx.send(result.ok());
        });
        match inner.jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                inner.in_flight.fetch_sub(1, Ordering::SeqCst);
                return Err(ImagePoolError::Saturated);
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                inner.in_flight.fetch_sub(1, Ordering::SeqCst);
                return Err(ImagePoolError::Failed);
            }
        }
        rx.await.ok().flatten().ok_or(ImagePoolError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// With one thread and room for one more, a job running and one
    /// queued both complete, and a third is refused at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_jobs_and_refuses_past_the_queue() {
        let pool = ImagePool::new(1, 1).unwrap();
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                })
                .await
            }
        });
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| ()).await }
        });
        while pool.in_flight() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(matches!(
            pool.run(|| ()).await,
            Err(ImagePoolError::Saturated)
        ));
        release.send(()).unwrap();
        assert!(running.await.unwrap().is_ok(), "the running job completes");
        assert!(queued.await.unwrap().is_ok(), "the queued job completes");
        assert_eq!(pool.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let pool = ImagePool::new(1, 4).unwrap();
        assert!(matches!(
            pool.run(|| panic!("bad image")).await,
            Err(ImagePoolError::Failed)
        ));
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
        assert_eq!(pool.in_flight(), 0);
    }
}
