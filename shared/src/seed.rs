//! Deterministic generated datasets, for the demo, the tests and the load tests.
//!
//! The same `--seed` gives the same users, follows, photos and likes. Every
//! seeded account has the password [`SEED_PASSWORD`]; it is hashed once per
//! run (one Argon2 hash, ~40 ms) and that hash is shared, so seeding 10k
//! users does not cost 10k hashes. Follows and likes are skewed towards a
//! few popular accounts and recent photos, as in a real social network.
//! Photos are real generated JPEGs; a pool of distinct images is reused
//! (files are content-addressed, so each is stored once).

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use crate::images;
use crate::store::{Dataset, ImportSummary, SeedPhoto, SeedUser, Store};

/// The password of every seeded account (`user1`, `user2`, ...).
pub const SEED_PASSWORD: &str = "minigram-password";
/// Seeded timestamps start here (2026-01-01T00:00:00Z, in ms) so that a
/// dataset does not depend on the day it was made.
const BASE_MS: i64 = 1_767_225_600_000;
const DISTINCT_IMAGES: usize = 256;

/// The shape of a generated dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct SeedArgs {
    /// Number of users (`user1` ... `userN`).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Number of photos, spread over the users.
    #[arg(long, default_value_t = 10_000)]
    pub photos: usize,
    /// How many accounts each user follows (popular accounts are more likely).
    #[arg(long, default_value_t = 20)]
    pub follows_per_user: usize,
    /// Number of likes, spread over users, skewed to recent photos.
    #[arg(long, default_value_t = 20_000)]
    pub likes: usize,
    /// A celebrity: this percentage of all users also follow `user1` (0:
    /// none). The celebrity experiment seeds one, to see what fan-out on
    /// write costs when one account has most users as followers.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub celebrity_percent: u8,
    /// Random seed: the same seed gives the same dataset.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Argon2id parameters of the accounts' shared password hash (a
    /// sign-in verifies with the parameters its hash was made with).
    #[arg(long, default_value = "m=19456,t=2,p=1")]
    pub argon2: crate::auth::PasswordCost,
}

impl SeedArgs {
    /// The small dataset an empty storage gets on its first start.
    pub const DEMO: Self = Self {
        users: 12,
        photos: 48,
        follows_per_user: 4,
        likes: 90,
        celebrity_percent: 0,
        seed: 7,
        argon2: crate::auth::PasswordCost::OWASP,
    };
}

/// Who to sign in as after seeding.
pub fn demo_login() -> String {
    format!("user1 / {SEED_PASSWORD}")
}

/// Generates the rows of a dataset (no I/O). `password_hash` is stored for
/// every user.
pub fn generate(
    args: &SeedArgs,
    password_hash: &str,
    image_names: &[(String, u32, u32)],
) -> Dataset {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let n = args.users;
    let users = (0..n)
        .map(|i| SeedUser {
            username: format!("user{}", i + 1),
            email: Some(format!("user{}@example.com", i + 1)),
            password_hash: password_hash.to_owned(),
            created_at: BASE_MS + i as i64 * 1000,
        })
        .collect();

    // Skewed choice in 0..len: small indices (early, "popular" users) much
    // more often; r² pushes the uniform draw towards zero.
    fn skewed(rng: &mut StdRng, len: usize) -> usize {
        let r: f64 = rng.random();
        ((r * r) * len as f64) as usize % len.max(1)
    }

    let mut follows = Vec::with_capacity(n * args.follows_per_user);
    let per_user = args.follows_per_user.min(n.saturating_sub(1));
    let mut chosen = HashSet::with_capacity(per_user * 2);
    for follower in 0..n {
        chosen.clear();
        let mut attempts = 0;
        while chosen.len() < per_user && attempts < per_user * 20 {
            attempts += 1;
            let followee = if attempts % 2 == 0 {
                rng.random_range(0..n)
            } else {
                skewed(&mut rng, n)
            };
            if followee != follower && chosen.insert(followee) {
                follows.push((follower, followee));
            }
        }
        // Drawn only with a celebrity, so other datasets stay as they were.
        if args.celebrity_percent > 0
            && follower != 0
            && !chosen.contains(&0)
            && rng.random_ratio(u32::from(args.celebrity_percent), 100)
        {
            follows.push((follower, 0));
        }
    }

    const WORDS: [&str; 16] = [
        "sunset",
        "coffee",
        "city",
        "beach",
        "friends",
        "mountains",
        "dinner",
        "cat",
        "weekend",
        "rain",
        "street",
        "garden",
        "morning",
        "concert",
        "bike",
        "lake",
    ];
    let span_ms: i64 = 300 * 24 * 3600 * 1000;
    let step = if args.photos > 0 {
        (span_ms / args.photos as i64).max(1)
    } else {
        1
    };
    let photos = (0..args.photos)
        .map(|j| {
            let (file_name, width, height) = image_names[j % image_names.len().max(1)].clone();
            let words = 1 + rng.random_range(0..3);
            let caption = (0..words)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ");
            SeedPhoto {
                user: if n > 0 { rng.random_range(0..n) } else { 0 },
                caption,
                file_name,
                width,
                height,
                created_at: BASE_MS + j as i64 * step,
            }
        })
        .collect::<Vec<_>>();

    let mut likes = Vec::with_capacity(args.likes);
    if n > 0 && !photos.is_empty() {
        let max_likes = args.likes.min(n.saturating_mul(photos.len()));
        let mut seen = HashSet::with_capacity(max_likes * 2);
        let mut attempts = 0usize;
        while likes.len() < max_likes && attempts < max_likes * 20 {
            attempts += 1;
            let user = rng.random_range(0..n);
            let photo = photos.len() - 1 - skewed(&mut rng, photos.len());
            if seen.insert((user, photo)) {
                likes.push((user, photo));
            }
        }
    }

    Dataset {
        users,
        photos,
        follows,
        likes,
    }
}

/// Writes the pool of distinct generated images; returns (name, w, h).
pub fn write_images(
    uploads_dir: &Path,
    count: usize,
    seed: u64,
) -> anyhow::Result<Vec<(String, u32, u32)>> {
    std::fs::create_dir_all(uploads_dir)?;
    (0..count.clamp(1, DISTINCT_IMAGES))
        .map(|i| {
            let s = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            let (w, h) = [(320, 320), (320, 240), (240, 320)][i % 3];
            let img = images::encode(&images::generated(s, w, h));
            images::store_file(uploads_dir, &img)?;
            Ok((img.file_name, img.width, img.height))
        })
        .collect()
}

/// Generates a dataset and loads it into `store`, printing progress.
pub async fn run<S: Store>(
    store: &S,
    uploads_dir: &Path,
    args: &SeedArgs,
) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    eprintln!(
        "seed 1/3: hashing the shared password and writing up to {} images",
        DISTINCT_IMAGES.min(args.photos.max(1))
    );
    let dir = uploads_dir.to_owned();
    let a = *args;
    let (hash, names) = tokio::task::spawn_blocking(move || {
        let hash = crate::auth::hash_blocking_with(SEED_PASSWORD, a.argon2)?;
        let names = write_images(&dir, a.photos, a.seed)?;
        Ok::<_, anyhow::Error>((hash, names))
    })
    .await??;
    eprintln!(
        "seed 2/3: generating {} users, {} photos, {} follows per user, {} likes (seed {})",
        args.users, args.photos, args.follows_per_user, args.likes, args.seed
    );
    let data = tokio::task::spawn_blocking(move || generate(&a, &hash, &names)).await?;
    eprintln!(
        "seed 3/3: importing {} users, {} photos, {} follows, {} likes",
        data.users.len(),
        data.photos.len(),
        data.follows.len(),
        data.likes.len()
    );
    let summary = store
        .import(data)
        .await
        .context("importing the dataset failed")?;
    eprintln!(
        "seeded {} users, {} photos, {} follows, {} likes in {:.1} s; every account's password is {SEED_PASSWORD:?}",
        summary.users,
        summary.photos,
        summary.follows,
        summary.likes,
        started.elapsed().as_secs_f64()
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<(String, u32, u32)> {
        vec![("a.jpg".into(), 1, 1), ("b.jpg".into(), 2, 2)]
    }

    #[test]
    fn same_seed_same_dataset() {
        let args = SeedArgs {
            users: 50,
            photos: 200,
            follows_per_user: 5,
            likes: 300,
            celebrity_percent: 0,
            seed: 1,
            argon2: crate::auth::PasswordCost::OWASP,
        };
        let a = generate(&args, "h", &names());
        let b = generate(&args, "h", &names());
        assert_eq!(a.follows, b.follows);
        assert_eq!(a.likes, b.likes);
        assert_eq!(
            a.photos.iter().map(|p| p.user).collect::<Vec<_>>(),
            b.photos.iter().map(|p| p.user).collect::<Vec<_>>()
        );
        let c = generate(&SeedArgs { seed: 2, ..args }, "h", &names());
        assert_ne!(a.follows, c.follows);
    }

    #[test]
    fn rows_are_consistent() {
        let args = SeedArgs {
            users: 30,
            photos: 100,
            follows_per_user: 10,
            likes: 500,
            celebrity_percent: 0,
            seed: 3,
            argon2: crate::auth::PasswordCost::OWASP,
        };
        let d = generate(&args, "h", &names());
        assert_eq!(d.users.len(), 30);
        assert_eq!(d.follows.len(), 300);
        assert_eq!(d.likes.len(), 500);
        let follows: HashSet<_> = d.follows.iter().collect();
        assert_eq!(follows.len(), d.follows.len(), "no duplicate follows");
        assert!(d.follows.iter().all(|(a, b)| a != b && *a < 30 && *b < 30));
        let likes: HashSet<_> = d.likes.iter().collect();
        assert_eq!(likes.len(), d.likes.len(), "no duplicate likes");
        assert!(
            d.photos
                .windows(2)
                .all(|w| w[0].created_at < w[1].created_at)
        );
    }

    #[test]
    fn tiny_datasets_do_not_loop_forever() {
        let args = SeedArgs {
            users: 2,
            photos: 1,
            follows_per_user: 50,
            likes: 100,
            celebrity_percent: 0,
            seed: 0,
            argon2: crate::auth::PasswordCost::OWASP,
        };
        let d = generate(&args, "h", &names());
        assert_eq!(d.follows.len(), 2);
        assert_eq!(d.likes.len(), 2);
    }

    #[test]
    fn a_celebrity_is_followed_by_its_share_of_users() {
        let args = SeedArgs {
            users: 2000,
            photos: 10,
            follows_per_user: 5,
            likes: 10,
            celebrity_percent: 80,
            seed: 4,
            argon2: crate::auth::PasswordCost::OWASP,
        };
        let d = generate(&args, "h", &names());
        let followers = d.follows.iter().filter(|(_, b)| *b == 0).count();
        // 80 % of 1999 others, give or take the draw.
        assert!((1500..=1700).contains(&followers), "{followers}");
        let follows: HashSet<_> = d.follows.iter().collect();
        assert_eq!(follows.len(), d.follows.len(), "no duplicate follows");
        let plain = generate(
            &SeedArgs {
                celebrity_percent: 0,
                ..args
            },
            "h",
            &names(),
        );
        let usual = plain.follows.iter().filter(|(_, b)| *b == 0).count();
        assert!(usual < followers / 4, "{usual} follow user1 without it");
    }
}
