//! Signing in: passwords ([`passwords`]: Argon2id on a pool of its own),
//! sign-in throttling ([`throttle`]) and session tokens (here).
//!
//! Tokens are 256 random bits from the OS-seeded CSPRNG, shown to the client
//! once, and stored only as their SHA-256.

mod passwords;
mod throttle;

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;

pub use passwords::*;
pub use throttle::*;

/// A new session token: 32 bytes from the CSPRNG, hex-encoded (64 chars).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether `token` has the shape of one we issue (64 hex digits): anything
/// else is refused without asking storage.
pub fn is_token_shaped(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
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

/// Live sessions one user keeps at most: a new sign-in past this ends the
/// oldest, so no client can grow storage by signing in forever. Far above
/// what a person uses (one per device or browser).
pub const MAX_SESSIONS_PER_USER: u32 = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_long() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_ne!(csrf_token(&a), csrf_token(&b));
    }
}
