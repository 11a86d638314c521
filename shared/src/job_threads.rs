//! A fixed number of named threads taking jobs from one channel: what the
//! password hasher ([`crate::auth::Hasher`]) and the image pool
//! ([`crate::image_pool`]) run on. Each thread keeps a state of its own
//! between jobs (the hasher's reusable Argon2 memory; nothing for images).
//! Bounding the queue and shedding are the callers' business: the hasher
//! predicts waits, the image pool uses a bounded channel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

/// One job; it gets the thread's own state.
pub type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Starts `threads` threads named `<name>-<i>` that run the jobs of
/// `jobs` until every sender is dropped.
pub fn spawn<S: Default + 'static>(
    name: &str,
    threads: usize,
    jobs: mpsc::Receiver<Job<S>>,
) -> std::io::Result<()> {
    let jobs = Arc::new(Mutex::new(jobs));
    for i in 0..threads.max(1) {
        let jobs = Arc::clone(&jobs);
        std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                let mut state = S::default();
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = jobs
                        .lock()
                        .map_err(|_| ())
                        .and_then(|r| r.recv().map_err(|_| ()));
                    match job {
                        Ok(job) => job(&mut state),
                        Err(()) => return, // the pool was dropped
                    }
                }
            })?;
    }
    Ok(())
}

/// Counts one job out of an in-flight counter when dropped (whether the
/// job ran, was skipped, refused or panicked).
pub struct Leaving<'a>(pub &'a AtomicUsize);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
