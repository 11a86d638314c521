//! Passwords: Argon2id hashing and verifying on a pool of its own.
//!
//! Argon2id with the argon2 crate's default (OWASP) parameters costs
//! ~10–40 ms of one core and 19 MiB per hash. That is the most expensive
//! thing Minigram does, so hashing runs on a few dedicated threads (one per
//! core by default, never an async worker), and at most `max_queue`
//! requests wait for one, and none whose predicted wait exceeds
//! [`MAX_HASH_WAIT`]: past that the server answers 503 at once instead of
//! queueing without bound. (A pool of our own rather than a crate's:
//! admission by predicted wait and per-thread reuse of the Argon2 memory
//! are the point of it.)
//!
//! Each hashing thread keeps its 19 MiB of Argon2 memory between hashes.
//! Allocating it afresh per hash costs ~4,800 page faults (≈9 ms of kernel
//! time on the reference machine) and halved login throughput.
//!
//! The parameters are a setting ([`PasswordCost`], `--argon2`), so the
//! hash-cost experiment can price the cheaper equivalents on OWASP's list;
//! a stored hash carries its own parameters, so verifying always costs what
//! hashing that password cost. Every hash's CPU time (the hashing thread's
//! own, from the kernel) is counted for `/api/metrics`.

use anyhow::Context;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::domain::Password;
use crate::job_threads;
use crate::timing;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes already waiting: shed this request.
    #[error("password hashing is saturated")]
    Saturated,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Argon2id's cost parameters: memory in KiB (`m`), passes (`t`) and lanes
/// (`p`). The default is OWASP's first recommendation and the argon2
/// crate's default, m=19456 (19 MiB), t=2, p=1; OWASP lists m=12288 t=3
/// and m=7168 t=5 (among others) as equivalent in strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for PasswordCost {
    fn default() -> Self {
        Self::OWASP
    }
}

impl PasswordCost {
    /// m=19456, t=2, p=1: OWASP's first choice, the argon2 crate's default.
    pub const OWASP: Self = Self {
        m_kib: Params::DEFAULT_M_COST,
        t: Params::DEFAULT_T_COST,
        p: Params::DEFAULT_P_COST,
    };

    fn params(&self) -> Params {
        Params::new(self.m_kib, self.t, self.p, None).expect("checked when parsed")
    }
}

impl std::fmt::Display for PasswordCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m={},t={},p={}", self.m_kib, self.t, self.p)
    }
}

impl std::str::FromStr for PasswordCost {
    type Err = String;

    /// `m=19456,t=2,p=1` (any part may be left out: it keeps the default).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut cost = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: use e.g. m=19456,t=2,p=1"))?;
            let n: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: {v:?} is not a whole number"))?;
            match k.trim() {
                "m" => cost.m_kib = n,
                "t" => cost.t = n,
                "p" => cost.p = n,
                other => return Err(format!("unknown Argon2 parameter {other:?} (m, t or p)")),
            }
        }
        Params::new(cost.m_kib, cost.t, cost.p, None)
            .map_err(|e| format!("Argon2 refuses {cost}: {e}"))?;
        Ok(cost)
    }
}

/// Hashes done by this process, and their CPU time in microseconds.
static HASHES: AtomicU64 = AtomicU64::new(0);
static HASH_CPU_MICROS: AtomicU64 = AtomicU64::new(0);

/// (hashes done, CPU seconds they took) since the process started.
pub fn hash_totals() -> (u64, f64) {
    (
        HASHES.load(Ordering::Relaxed),
        HASH_CPU_MICROS.load(Ordering::Relaxed) as f64 / 1e6,
    )
}

/// This thread's CPU time in ns (`/proc/thread-self/schedstat`), if the
/// kernel tells it.
fn thread_cpu_nanos() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Argon2id with a reusable memory buffer: create one per thread and keep it.
#[derive(Default)]
pub struct PasswordWork {
    blocks: Vec<Block>,
}

impl PasswordWork {
    fn memory(&mut self, params: &Params) -> &mut [Block] {
        let n = params.block_count();
        if self.blocks.len() < n {
            self.blocks.resize(n, Block::default());
        }
        &mut self.blocks[..n]
    }

    /// A new Argon2id hash (default parameters, random 16-byte salt) as a
    /// PHC string.
    pub fn hash(&mut self, password: &str) -> anyhow::Result<String> {
        self.hash_with(password, PasswordCost::default())
    }

    /// A new Argon2id hash with `cost`, random 16-byte salt, as a PHC string.
    pub fn hash_with(&mut self, password: &str, cost: PasswordCost) -> anyhow::Result<String> {
        let params = cost.params();
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into_with_memory(
                password.as_bytes(),
                &salt,
                &mut out,
                self.memory(&params),
            )
            .context("argon2 hash failed")?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).context("argon2 parameters")?,
            salt: Some(Salt::new(&salt).context("argon2 salt")?),
            hash: Some(Output::new(&out).context("argon2 output")?),
        };
        Ok(phc.to_string())
    }

    /// Checks a password against a PHC string (in constant time); a
    /// malformed hash is a mismatch (and logged), never a panic.
    pub fn verify(&mut self, password: &str, hash: &str) -> bool {
        match self.try_verify(password, hash) {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!(error = %e, "stored password hash could not be checked");
                false
            }
        }
    }

    fn try_verify(
        &mut self,
        password: &str,
        hash: &str,
    ) -> Result<bool, argon2::password_hash::Error> {
        let parsed = PasswordHash::new(hash)?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str())?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let params = Params::try_from(&parsed)?;
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return Ok(false);
        };
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            self.memory(&params),
        )?;
        // `Output`'s equality is constant-time.
        Ok(Output::new(&out)? == *expected)
    }
}

type Job = job_threads::Job<PasswordWork>;

/// The longest a sign-in is allowed to wait for a hashing thread: a longer
/// wait predicted when it arrives gets an immediate 503, and one that turns
/// out longer than predicted gets its 503 when a thread reaches it.
pub const MAX_HASH_WAIT: Duration = Duration::from_secs(2);

/// Bounded Argon2id hashing on dedicated threads.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<HasherInner>,
}

struct HasherInner {
    jobs: Mutex<mpsc::Sender<Job>>,
    threads: usize,
    max_queue: usize,
    /// Requests waiting for or holding a hashing thread.
    queued: AtomicUsize,
    /// Hashes this hasher computed (the process-wide figure is [`hash_totals`]).
    done: AtomicU64,
    /// Recent time of one hash (µs, moving average): with the queue length
    /// it predicts a new sign-in's wait.
    hash_micros: AtomicU64,
    /// A real hash of a random password: verified when the user does not
    /// exist, so an unknown username costs the same as a wrong password.
    dummy_hash: String,
    /// The parameters of new hashes.
    cost: PasswordCost,
}

impl Hasher {
    /// `threads` hashes run at once; `max_queue` more may wait.
    pub fn new(threads: usize, max_queue: usize) -> anyhow::Result<Self> {
        Self::with_cost(threads, max_queue, PasswordCost::default())
    }

    /// [`Hasher::new`] hashing new passwords with `cost`.
    pub fn with_cost(threads: usize, max_queue: usize, cost: PasswordCost) -> anyhow::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        job_threads::spawn("argon2", threads, rx)?;
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let timed = Instant::now();
        let dummy_hash = PasswordWork::default().hash_with(&hex::encode(random), cost)?;
        let first_hash = timed.elapsed().as_micros() as u64;
        Ok(Self {
            inner: Arc::new(HasherInner {
                jobs: Mutex::new(tx),
                threads,
                max_queue,
                queued: AtomicUsize::new(0),
                done: AtomicU64::new(0),
                hash_micros: AtomicU64::new(first_hash.max(1)),
                dummy_hash,
                cost,
            }),
        })
    }

    /// Hashes (and verifies) this hasher has computed.
    pub fn hashes_done(&self) -> u64 {
        self.inner.done.load(Ordering::Relaxed)
    }

    /// Hashes currently running or waiting.
    pub fn in_flight(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// True when a new hash would be refused: callers shed before doing
    /// any other work for a sign-in that cannot be served.
    pub fn is_full(&self) -> bool {
        self.refuses(self.in_flight())
    }

    /// Whether a sign-in arriving behind `ahead` others is refused: past
    /// `max_queue` waiting, or when the predicted wait (the queue ahead
    /// shared by the threads, at the recent time per hash) exceeds
    /// [`MAX_HASH_WAIT`]. A count alone is not enough: when the machine is
    /// saturated each hash takes several times longer, and a queue that
    /// drains in 2 s on an idle machine then takes 15.
    fn refuses(&self, ahead: usize) -> bool {
        let inner = &self.inner;
        if ahead >= inner.threads + inner.max_queue {
            return true;
        }
        let waiting = (ahead + 1).saturating_sub(inner.threads) as u64;
        let per_hash = inner.hash_micros.load(Ordering::Relaxed);
        waiting * per_hash / inner.threads as u64 > MAX_HASH_WAIT.as_micros() as u64
    }

    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        let cost = self.inner.cost;
        self.run(move |w| w.hash_with(password.expose(), cost))
            .await
    }

    /// Verifies `password` against `stored`, or against the dummy hash when
    /// there is no such user (the answer is then always false).
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.inner.dummy_hash.clone());
        let ok = self
            .run(move |w| Ok(w.verify(password.expose(), &hash)))
            .await?;
        Ok(ok && known)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut PasswordWork) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashError> {
        let inner = &self.inner;
        let before = inner.queued.fetch_add(1, Ordering::SeqCst);
        let _guard = job_threads::Leaving(&inner.queued);
        if self.refuses(before) {
            return Err(HashError::Saturated);
        }
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let averages = Arc::clone(inner);
        let job: Job = Box::new(move |w| {
            if tx.is_closed() {
                // The request gave up (timed out or the client left) while
                // it waited: don't spend ~40 ms of a core on nobody.
                return;
            }
            let queued = started.elapsed();
            if queued > MAX_HASH_WAIT {
                // The prediction at arrival was too hopeful (the machine
                // got busier): shed now rather than answer later still.
                let _ = tx.send(None);
                return;
            }
            let hashing = Instant::now();
            let cpu0 = thread_cpu_nanos();
            let result = work(w);
            let took = hashing.elapsed().as_micros() as u64;
            // The thread's own CPU time (wall time where the kernel does
            // not say): on a busy machine a hash waits for a core too.
            let cpu = match (cpu0, thread_cpu_nanos()) {
                (Some(a), Some(b)) => b.saturating_sub(a) / 1000,
                _ => took,
            };
            HASHES.fetch_add(1, Ordering::Relaxed);
            averages.done.fetch_add(1, Ordering::Relaxed);
            HASH_CPU_MICROS.fetch_add(cpu, Ordering::Relaxed);
            let avg = &averages.hash_micros;
            let _ = avg.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some((old * 7 + took) / 8)
            });
            metrics::histogram!("minigram_password_hash_wait_seconds").record(queued.as_secs_f64());
            metrics::histogram!("minigram_password_hash_duration_seconds")
                .record(hashing.elapsed().as_secs_f64());
            let _ = tx.send(Some(result));
        });
        inner
            .jobs
            .lock()
            .map_err(|_| HashError::Unexpected(anyhow::anyhow!("hasher poisoned")))?
            .send(job)
            .map_err(|_| HashError::Unexpected(anyhow::anyhow!("hashing threads are gone")))?;
        let result = rx
            .await
            .map_err(|_| HashError::Unexpected(anyhow::anyhow!("a hashing thread panicked")))?;
        timing::record(timing::Phase::Hash, started.elapsed());
        Ok(result.ok_or(HashError::Saturated)??)
    }
}

/// One Argon2id hash with default parameters and a fresh random salt. Blocks
/// for a hash's time: call from a blocking thread (or a seed command).
pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    PasswordWork::default().hash(password)
}

/// [`hash_blocking`] with `cost` (the seed hashes its shared password so).
pub fn hash_blocking_with(password: &str, cost: PasswordCost) -> anyhow::Result<String> {
    PasswordWork::default().hash_with(password, cost)
}

/// Checks a password against a PHC hash string (allocates its memory; a
/// loop should keep a [`PasswordWork`]).
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordWork::default().verify(password, hash)
}

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
    fn compatible_with_the_argon2_crate() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let ours = hash_blocking("pw-one").unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"pw-one", ours.as_str())
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password(b"pw-two")
            .unwrap()
            .to_string();
        let mut work = PasswordWork::default();
        assert!(work.verify("pw-two", &theirs));
        assert!(!work.verify("pw-one", &theirs));
        assert!(work.verify("pw-one", &ours), "memory reuse across hashes");
    }

    #[test]
    fn password_cost_strings() {
        assert_eq!("".parse::<PasswordCost>().unwrap(), PasswordCost::default());
        let c: PasswordCost = "m=7168,t=5,p=1".parse().unwrap();
        assert_eq!((c.m_kib, c.t, c.p), (7168, 5, 1));
        assert_eq!(c.to_string(), "m=7168,t=5,p=1");
        let h = hash_blocking_with("pw", "m=8192,t=1".parse().unwrap()).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{h}");
        assert!(verify_blocking("pw", &h));
        for bad in ["m=1", "t=0", "q=3", "m=lots", "m"] {
            assert!(bad.parse::<PasswordCost>().is_err(), "{bad}");
        }
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
