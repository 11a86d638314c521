//! Passwords and session tokens.
//!
//! Argon2id with the argon2 crate's default (OWASP) parameters costs ~40 ms
//! of one core and 19 MiB per hash. That is the most expensive thing
//! Minigram does, so hashing runs on the blocking thread pool (never on an
//! async worker), at most `concurrency` at a time, and at most `max_queue`
//! requests wait for a slot: past that the server answers 503 at once
//! instead of queueing without bound.
//!
//! Tokens are 256 random bits from the OS-seeded CSPRNG, shown to the client
//! once, and stored only as their SHA-256.

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::domain::Password;
use crate::timing;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes already waiting: shed this request.
    #[error("password hashing is saturated")]
    Saturated,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Bounded, off-the-workers Argon2id hashing.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<HasherInner>,
}

struct HasherInner {
    slots: Semaphore,
    concurrency: usize,
    max_queue: usize,
    /// Requests waiting for or holding a slot, for shedding and metrics.
    queued: AtomicUsize,
    /// A real hash of a random password: verified when the user does not
    /// exist, so an unknown username costs the same as a wrong password.
    dummy_hash: String,
}

impl Hasher {
    /// `concurrency` hashes run at once; `max_queue` more may wait.
    pub fn new(concurrency: usize, max_queue: usize) -> anyhow::Result<Self> {
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let dummy_hash = hash_blocking(&hex::encode(random))?;
        Ok(Self {
            inner: Arc::new(HasherInner {
                slots: Semaphore::new(concurrency.max(1)),
                concurrency: concurrency.max(1),
                max_queue,
                queued: AtomicUsize::new(0),
                dummy_hash,
            }),
        })
    }

    /// Hashes currently running or waiting.
    pub fn in_flight(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        self.run(move || hash_blocking(password.expose())).await
    }

    /// Verifies `password` against `stored`, or against the dummy hash when
    /// there is no such user (the answer is then always false).
    pub async fn verify(&self, password: Password, stored: Option<String>) -> Result<bool, HashError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.inner.dummy_hash.clone());
        let ok = self
            .run(move || Ok(verify_blocking(password.expose(), &hash)))
            .await?;
        Ok(ok && known)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashError> {
        let inner = &self.inner;
        let before = inner.queued.fetch_add(1, Ordering::SeqCst);
        let _guard = QueueGuard(&inner.queued);
        if before >= inner.concurrency + inner.max_queue {
            return Err(HashError::Saturated);
        }
        let started = Instant::now();
        let _permit = inner
            .slots
            .acquire()
            .await
            .map_err(|e| HashError::Unexpected(e.into()))?;
        let result = tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| HashError::Unexpected(e.into()))?;
        timing::record(timing::Phase::Hash, started.elapsed());
        Ok(result?)
    }
}

struct QueueGuard<'a>(&'a AtomicUsize);

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One Argon2id hash with default parameters and a fresh random salt. Blocks
/// for ~40 ms: call from a blocking thread (or a seed command).
pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hash failed: {e}"))
}

/// Checks a password against a PHC hash string; a malformed hash is a
/// mismatch (and logged), never a panic.
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    match Argon2::default().verify_password(password.as_bytes(), hash) {
        Ok(()) => true,
        Err(argon2::password_hash::Error::PasswordInvalid) => false,
        Err(e) => {
            tracing::warn!(error = %e, "stored password hash could not be checked");
            false
        }
    }
}

/// A new session token: 32 bytes from the CSPRNG, hex-encoded (64 chars).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What storage keeps of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The anti-CSRF value for HTML forms, bound to the session token: a page
/// from another site cannot read the cookie, so it cannot compute this.
pub fn csrf_token(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"minigram-csrf:");
    h.update(session_token.as_bytes());
    hex::encode(h.finalize())
}

/// Tokens live this long unless revoked by logout.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_blocking("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking("correct horse", &h));
        assert!(!verify_blocking("wrong horse", &h));
        assert!(!verify_blocking("x", "not a phc string"));
    }

    #[test]
    fn tokens_are_unique_and_long() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_ne!(csrf_token(&a), csrf_token(&b));
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let hasher = Hasher::new(1, 4).unwrap();
        let pw = Password::for_login("anything").unwrap();
        assert!(!hasher.verify(pw, None).await.unwrap());
    }

    #[tokio::test]
    async fn sheds_past_the_queue_bound() {
        let hasher = Hasher::new(1, 1).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let h = hasher.clone();
            tasks.push(tokio::spawn(async move {
                h.hash(Password::parse("correct horse").unwrap()).await
            }));
        }
        let mut shed = 0;
        let mut done = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => done += 1,
                Err(HashError::Saturated) => shed += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(done >= 2, "one running and one queued must complete");
        assert!(shed >= 1, "six at once with room for two must shed some");
        assert_eq!(hasher.in_flight(), 0);
    }
}
