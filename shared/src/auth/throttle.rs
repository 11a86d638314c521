//! Sign-in throttling, per account and per client address: the limits
//! ([`Throttle`]), what a reservation asks of storage ([`AttemptLimit`],
//! [`Reservation`]) and stage 1's in-memory counters ([`LocalStrikes`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sign-in throttling, per account and per client address.
///
/// - **Per account**: after `max_failures` wrong passwords for one username
///   within `window` (counted from the first failure), that username gets
///   `429 too_many_attempts` with `Retry-After` until the window ends.
///   Unknown usernames are counted the same way, so the answer never tells
///   whether an account exists. A successful sign-in clears the count.
/// - **Per client address**: after `max_failures_per_client` failures from
///   one address (any usernames) within `window`, that address gets the
///   same 429. So one client cannot spray a password over every account,
///   nor keep more than `max_failures_per_client / max_failures` accounts
///   locked at once.
///
/// Each attempt is **reserved before its hash is spent**, atomically for
/// both keys ([`crate::Store::reserve_sign_in`]): a parallel burst of
/// guesses cannot all pass a check that is only counted afterwards. A
/// reservation stands as a failure unless the password was right (the
/// username's count is cleared, the address's attempt given back) or no
/// hash was spent (both given back).
///
/// The trade (README, "Sign-in abuse"): a correct password for a locked
/// account still gets the 429, so an outsider who knows a username can
/// lock its owner out for one window at a time. The lock ends with the
/// window, and the per-address limit bounds how many accounts one address
/// can keep locked; many addresses (a botnet) can still lock an account,
/// which is the price of never letting guesses through a lock.
/// `max_failures = 0` turns both limits off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub max_failures: u32,
    pub max_failures_per_client: u32,
    pub window: Duration,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            max_failures: 10,
            max_failures_per_client: 100,
            window: Duration::from_secs(300),
        }
    }
}

impl Throttle {
    pub fn enabled(&self) -> bool {
        self.max_failures > 0
    }

    /// The two counters one sign-in attempt reserves against.
    pub fn limits(&self, username: &str, client: &str) -> [AttemptLimit; 2] {
        [
            AttemptLimit {
                key: format!("user:{}", throttle_key(username)),
                max: self.max_failures,
            },
            AttemptLimit {
                key: format!("addr:{client}"),
                max: if self.max_failures_per_client == 0 {
                    u32::MAX
                } else {
                    self.max_failures_per_client
                },
            },
        ]
    }
}

/// One counter an attempt is reserved against, and its maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptLimit {
    pub key: String,
    pub max: u32,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Counted on every key: go on and verify.
    Granted,
    /// Limit number `limit` (an index into the limits asked for) is full
    /// until its window ends in `retry_after_secs`; nothing was counted.
    Locked { limit: usize, retry_after_secs: u64 },
}

/// The key failures are counted under: the username as typed, case-folded
/// (names are unique regardless of case) and cut to a bounded length.
pub fn throttle_key(username: &str) -> String {
    username
        .trim()
        .chars()
        .take(64)
        .collect::<String>()
        .to_lowercase()
}

/// Failure counts kept in the process (stage 1 is one process). Bounded:
/// an entry is created only by a reservation, reservations are limited by
/// the hasher (tens per second) and per address, and expired entries are
/// dropped whenever the map reaches 4,096 entries.
#[derive(Default)]
pub struct LocalStrikes {
    /// A std Mutex: held for a few map operations only, never across an
    /// await; one lock makes check-and-count of both keys atomic.
    counts: Mutex<std::collections::HashMap<String, (u32, Instant)>>,
}

impl LocalStrikes {
    /// See [`crate::Store::reserve_sign_in`].
    pub fn reserve(&self, limits: &[AttemptLimit], window: Duration) -> Reservation {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= 4096 {
            counts.retain(|_, (_, ends)| *ends > now);
        }
        for (i, limit) in limits.iter().enumerate() {
            if let Some(&(count, ends)) = counts.get(&limit.key)
                && ends > now
                && count >= limit.max
            {
                return Reservation::Locked {
                    limit: i,
                    retry_after_secs: (ends - now).as_secs().max(1),
                };
            }
        }
        for limit in limits {
            let entry = counts.entry(limit.key.clone()).or_insert((0, now + window));
            if entry.1 <= now {
                *entry = (0, now + window);
            }
            entry.0 += 1;
        }
        Reservation::Granted
    }

    /// Gives back one reserved attempt on each key.
    pub fn release(&self, keys: &[&str]) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if let Some(entry) = counts.get_mut(*key) {
                entry.0 = entry.0.saturating_sub(1);
                if entry.0 == 0 {
                    counts.remove(*key);
                }
            }
        }
    }

    /// Forgets a key's failures (after a successful sign-in).
    pub fn clear(&self, key: &str) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    fn limits(user: &str, max: u32, client_max: u32) -> Vec<AttemptLimit> {
        vec![
            AttemptLimit {
                key: format!("user:{user}"),
                max,
            },
            AttemptLimit {
                key: "addr:1.2.3.4".into(),
                max: client_max,
            },
        ]
    }

    #[test]
    fn reservations_count_until_a_limit_and_reset_after_the_window() {
        let strikes = LocalStrikes::default();
        let window = Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(
                strikes.reserve(&limits("bob", 3, 100), window),
                Reservation::Granted
            );
        }
        match strikes.reserve(&limits("bob", 3, 100), window) {
            Reservation::Locked {
                limit: 0,
                retry_after_secs,
            } => assert!((59..=60).contains(&retry_after_secs)),
            other => panic!("{other:?}"),
        }
        // The address has 3 of 4: one more for another name, then locked.
        assert_eq!(
            strikes.reserve(&limits("carol", 3, 4), window),
            Reservation::Granted
        );
        assert!(matches!(
            strikes.reserve(&limits("dave", 3, 4), window),
            Reservation::Locked { limit: 1, .. }
        ));
        // A refused reservation counted nothing: dave has no failures.
        strikes.release(&["addr:1.2.3.4"]);
        assert_eq!(
            strikes.reserve(&limits("dave", 1, 4), window),
            Reservation::Granted
        );
        strikes.clear("user:bob");
        assert_eq!(
            strikes.reserve(&limits("bob", 3, 100), window),
            Reservation::Granted
        );

        let short = [AttemptLimit {
            key: "user:short".into(),
            max: 1,
        }];
        strikes.reserve(&short, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            strikes.reserve(&short, window),
            Reservation::Granted,
            "window over"
        );
    }

    #[test]
    fn keys_ignore_case_and_length() {
        assert_eq!(throttle_key(" Bob "), "bob");
        assert_eq!(throttle_key(&"x".repeat(1000)).len(), 64);
    }
}
