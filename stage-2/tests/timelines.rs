//! Timelines (`--feed-strategy push|hybrid`) on the real Postgres and
//! Redis: fan-out writes followers' timelines and the feed reads them; a
//! fan-out worker that dies mid-way loses nothing (its entries are claimed
//! by another); a celebrity's photos are merged at read time instead of
//! fanned out; a follow change and a page past a full timeline are right.
//! And both contract suites pass with push and with hybrid.

mod common;

use common::{figure, redis, timeline_key};
use contract::Backend;
use contract::storage::{photo, user};
use minigram::domain::{PageQuery, PhotoId, UserId};
use minigram::figure_keys as keys;
use minigram::store::Store;
use stage_2::store::{FeedStrategy, timelines::GROUP};
use stage_2::{Stage2Config, Stage2Store};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A stage-2 store with timelines and this process's fan-out workers
/// running (what `stage-2 serve` starts), on its own database and prefix.
struct Pushed(common::Pg);

impl Pushed {
    async fn start(tune: impl FnOnce(&mut Stage2Config)) -> Self {
        let (mut config, name) = common::fresh_config();
        config.feed_strategy = FeedStrategy::Push;
        config.feed_cache = false;
        tune(&mut config);
        let pg = common::Pg::with_config(config, name).await;
        stage_2::fanout::start(pg.store.clone());
        Self(pg)
    }
}

impl Backend for Pushed {
    type Store = Stage2Store;

    async fn fresh() -> Self {
        Self::start(|_| {}).await
    }

    fn store(&self) -> Stage2Store {
        self.0.store.clone()
    }

    fn uploads_dir(&self) -> PathBuf {
        self.0.dir.path().join("uploads")
    }

    async fn count(&self, table: &'static str) -> i64 {
        common::count(&self.0.store, table).await
    }
}

/// Hybrid, with everyone who has a follower counted a celebrity, so the
/// contract's feeds are merged at read time.
struct Hybrid(Pushed);

impl Backend for Hybrid {
    type Store = Stage2Store;

    async fn fresh() -> Self {
        Self(
            Pushed::start(|c| {
                c.feed_strategy = FeedStrategy::Hybrid;
                c.celebrity_followers = 0;
            })
            .await,
        )
    }

    fn store(&self) -> Stage2Store {
        self.0.store()
    }

    fn uploads_dir(&self) -> PathBuf {
        self.0.uploads_dir()
    }

    async fn count(&self, table: &'static str) -> i64 {
        self.0.count(table).await
    }
}

/// The HTTP and storage contracts with every feed read from a timeline.
mod push {
    use super::*;
    contract::contract_tests!(Pushed);
}

/// The same with every followed account merged at read time.
mod hybrid {
    use super::*;
    contract::contract_tests!(Hybrid);
}

async fn post(store: &Stage2Store, owner: UserId, caption: &str) -> i64 {
    photo(store, owner, caption).await.0
}

fn page(limit: u32, before: Option<i64>) -> PageQuery {
    contract::storage::page(limit, before.map(PhotoId))
}

async fn feed_ids(store: &Stage2Store, viewer: UserId, limit: u32) -> Vec<i64> {
    store
        .feed(viewer, page(limit, None))
        .await
        .unwrap()
        .photos
        .iter()
        .map(|p| p.id.0)
        .collect()
}

async fn in_timeline(store: &Stage2Store, user: UserId, photo: i64) -> bool {
    let score: Option<f64> = redis(
        store,
        redis::cmd("ZSCORE")
            .arg(timeline_key(store, user.0))
            .arg(photo),
    )
    .await;
    score.is_some()
}

/// Waits (up to 10 s) until `photo` is in the timeline of every one of
/// `users`.
async fn fanned_out(store: &Stage2Store, users: &[UserId], photo: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for u in users {
        while !in_timeline(store, *u, photo).await {
            assert!(
                Instant::now() < deadline,
                "photo {photo} not in user {}'s timeline within 10 s",
                u.0
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A built timeline is read, not rebuilt: a new photo gets there by
/// fan-out, and the follower's next feed shows it without a new build.
#[tokio::test]
async fn a_new_photo_reaches_built_timelines_by_fan_out() {
    let b = Pushed::fresh().await;
    let s = b.store();
    let owner = s.create_user(user("poster")).await.unwrap();
    let fans: Vec<UserId> = {
        let mut v = Vec::new();
        for i in 0..5 {
            let fan = s.create_user(user(&format!("fan{i}"))).await.unwrap();
            s.set_follow(fan, owner, true).await.unwrap();
            v.push(fan);
        }
        v
    };
    let first = post(&s, owner, "first").await;
    for fan in &fans {
        assert_eq!(feed_ids(&s, *fan, 10).await, [first], "built from Postgres");
    }
    let built = figure(&s, keys::TIMELINES_BUILT);
    assert_eq!(built, 5.0, "one build per reader");

    let second = post(&s, owner, "second").await;
    let mut everyone = fans.clone();
    everyone.push(owner);
    fanned_out(&s, &everyone, second).await;
    for fan in &fans {
        assert_eq!(feed_ids(&s, *fan, 10).await, [second, first]);
    }
    assert_eq!(
        figure(&s, keys::TIMELINES_BUILT),
        built,
        "the second reads came from the timelines, not from new builds"
    );
    assert!(
        figure(&s, keys::FANOUT_WRITES) >= 6.0,
        "owner + 5 fans written"
    );
}

/// A worker that took entries and died before acknowledging them (here:
/// a consumer that reads and never acks) loses nothing: after the claim
/// delay a live worker claims them (XAUTOCLAIM) and fans them out.
#[tokio::test]
async fn entries_of_a_dead_worker_are_claimed_and_fanned_out() {
    // No live worker yet: the dead one must get the entries first.
    let (mut config, name) = common::fresh_config();
    config.feed_strategy = FeedStrategy::Push;
    config.feed_cache = false;
    config.fanout_claim_after = Duration::from_millis(300);
    let pg = common::Pg::with_config(config, name).await;
    let s = pg.store.clone();
    let owner = s.create_user(user("poster")).await.unwrap();
    let fan = s.create_user(user("fan")).await.unwrap();
    s.set_follow(fan, owner, true).await.unwrap();
    assert!(
        feed_ids(&s, fan, 10).await.is_empty(),
        "timeline built, empty"
    );
    let stream = format!("{}:fanout:stream", s.config().redis_prefix);
    let _: String = redis(
        &s,
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM"),
    )
    .await;
    let photos = [
        post(&s, owner, "one").await,
        post(&s, owner, "two").await,
        post(&s, owner, "three").await,
    ];
    // The doomed worker reads all three and dies without XACK.
    let taken: redis::Value = redis(
        &s,
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg("doomed-worker")
            .arg("COUNT")
            .arg(10)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">"),
    )
    .await;
    assert!(matches!(taken, redis::Value::Array(ref a) if !a.is_empty()));
    let pending: (i64, redis::Value, redis::Value, redis::Value) =
        redis(&s, redis::cmd("XPENDING").arg(&stream).arg(GROUP)).await;
    assert_eq!(pending.0, 3, "three entries held by the dead worker");
    for p in photos {
        assert!(!in_timeline(&s, fan, p).await);
    }

    // A live worker starts; it must claim them after the claim delay.
    stage_2::fanout::start(s.clone());
    fanned_out(&s, &[fan, owner], photos[2]).await;
    for p in photos {
        assert!(in_timeline(&s, fan, p).await, "photo {p} lost");
    }
    let mut want = photos.to_vec();
    want.reverse();
    assert_eq!(feed_ids(&s, fan, 10).await, want);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pending: (i64, redis::Value, redis::Value, redis::Value) =
            redis(&s, redis::cmd("XPENDING").arg(&stream).arg(GROUP)).await;
        if pending.0 == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "claimed entries never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Hybrid: an account over the threshold is not fanned out (its
/// followers' timelines do not get the photo) and its photo is in their
/// feeds all the same, merged at read time; a small account is fanned out.
#[tokio::test]
async fn a_celebrity_is_merged_at_read_time_not_fanned_out() {
    let b = Pushed::start(|c| {
        c.feed_strategy = FeedStrategy::Hybrid;
        c.celebrity_followers = 2;
    })
    .await;
    let s = b.store();
    let star = s.create_user(user("star")).await.unwrap();
    let friend = s.create_user(user("friend")).await.unwrap();
    let mut fans = Vec::new();
    for i in 0..3 {
        let fan = s.create_user(user(&format!("fan{i}"))).await.unwrap();
        s.set_follow(fan, star, true).await.unwrap();
        fans.push(fan);
    }
    s.set_follow(fans[0], friend, true).await.unwrap();
    for fan in &fans {
        assert!(feed_ids(&s, *fan, 10).await.is_empty());
    }
    let from_friend = post(&s, friend, "small account").await;
    fanned_out(&s, &[fans[0]], from_friend).await;
    let from_star = post(&s, star, "big account").await;
    // The star's own timeline gets it: once it is there, fan-out is done.
    fanned_out(&s, &[star], from_star).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while figure(&s, keys::FANOUT_CELEBRITY_POSTS) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the star's photo was not handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for fan in &fans {
        assert!(
            !in_timeline(&s, *fan, from_star).await,
            "a celebrity's photo is not written to 3 timelines"
        );
    }
    assert_eq!(feed_ids(&s, fans[0], 10).await, [from_star, from_friend]);
    assert_eq!(feed_ids(&s, fans[1], 10).await, [from_star]);
    // Someone who does not follow the star does not get it merged in.
    assert!(feed_ids(&s, friend, 10).await == [from_friend]);
}

/// An unfollow takes the unfollowed account out of the feed at once (the
/// timeline is dropped and rebuilt), and a page past a full timeline's
/// oldest id comes from Postgres, so paging still reaches every photo.
#[tokio::test]
async fn unfollow_and_pages_past_a_full_timeline_are_right() {
    let b = Pushed::start(|c| c.timeline_cap = 3).await;
    let s = b.store();
    let me = s.create_user(user("reader")).await.unwrap();
    let friend = s.create_user(user("friend")).await.unwrap();
    s.set_follow(me, friend, true).await.unwrap();
    let mut all = Vec::new();
    for i in 0..7 {
        all.push(post(&s, friend, &format!("p{i}")).await);
    }
    all.reverse();
    // Pages of 2 over a timeline of 3: the second page runs past it.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let p = s.feed(me, page(2, before)).await.unwrap();
        seen.extend(p.photos.iter().map(|p| p.id.0));
        match p.next {
            Some(next) => before = Some(next.parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, all, "every photo, newest first, each once");
    assert!(figure(&s, keys::TIMELINES_PAST_END) >= 1.0);

    let newest = post(&s, friend, "after").await;
    fanned_out(&s, &[me], newest).await;
    assert_eq!(feed_ids(&s, me, 1).await, [newest]);
    s.set_follow(me, friend, false).await.unwrap();
    assert!(
        feed_ids(&s, me, 10).await.is_empty(),
        "an unfollowed account's photos leave the feed at once"
    );
}
