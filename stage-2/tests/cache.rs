//! The Redis feed cache: read-your-writes for the user who changes
//! something, a new photo in every follower's next read, fresh like counts,
//! and hits that really come from the cache.

mod common;

use common::Pg;
use contract::{TestApp, spawn_app};
use reqwest::Method;
use serde_json::Value;
use std::sync::atomic::Ordering;

async fn feed_ids(app: &TestApp<Pg>, token: &str) -> Vec<i64> {
    let page: Value = app
        .get("/api/feed?limit=50", Some(token))
        .await
        .json()
        .await
        .unwrap();
    page["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

/// A follower's cached feed shows a new photo on the next read; so does
/// the uploader's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_photo_shows_in_every_followers_next_read() {
    let app = spawn_app::<Pg>().await;
    let star = app.make_user("star").await;
    let fans = [app.make_user("fan_a").await, app.make_user("fan_b").await];
    for fan in &fans {
        app.send(
            Method::POST,
            &format!("/api/users/{}/follow", star.id),
            Some(&fan.token),
        )
        .await;
    }
    let first = app.posted_photo(&star, "one").await["id"].as_i64().unwrap();
    for fan in &fans {
        assert_eq!(feed_ids(&app, &fan.token).await, vec![first]);
        assert_eq!(
            feed_ids(&app, &fan.token).await,
            vec![first],
            "a cached read"
        );
    }
    let hits_before = app.backend.store.stats().cache_hits.load(Ordering::Relaxed);
    assert!(hits_before >= 2, "the second reads were cache hits");
    assert_eq!(app.backend.redis_keys("feed:*").await, 2);

    let second = app.posted_photo(&star, "two").await["id"].as_i64().unwrap();
    for fan in &fans {
        assert_eq!(
            feed_ids(&app, &fan.token).await,
            vec![second, first],
            "follower sees the new photo"
        );
    }
    assert_eq!(
        feed_ids(&app, &star.token).await,
        vec![second, first],
        "uploader sees it too"
    );
}

/// Follow and unfollow change the follower's very next feed read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_and_unfollow_show_in_the_next_read() {
    let app = spawn_app::<Pg>().await;
    let me = app.make_user("reader").await;
    let other = app.make_user("author").await;
    let theirs = app.posted_photo(&other, "theirs").await["id"]
        .as_i64()
        .unwrap();
    assert!(feed_ids(&app, &me.token).await.is_empty());
    assert!(
        feed_ids(&app, &me.token).await.is_empty(),
        "cached as empty"
    );
    let follow = format!("/api/users/{}/follow", other.id);
    app.send(Method::POST, &follow, Some(&me.token)).await;
    assert_eq!(feed_ids(&app, &me.token).await, vec![theirs]);
    app.send(Method::DELETE, &follow, Some(&me.token)).await;
    assert!(feed_ids(&app, &me.token).await.is_empty());
}

/// Like counts in a cached feed are always current (pages are hydrated
/// from Postgres; only the list of ids is cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn likes_are_fresh_in_a_cached_feed() {
    let app = spawn_app::<Pg>().await;
    let me = app.make_user("liker").await;
    let photo = app.posted_photo(&me, "mine").await;
    feed_ids(&app, &me.token).await; // warm the cache
    app.send(
        Method::POST,
        &format!("/api/photos/{}/like", photo["id"]),
        Some(&me.token),
    )
    .await;
    let page: Value = app
        .get("/api/feed", Some(&me.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["photos"][0]["likeCount"], 1);
    assert_eq!(page["photos"][0]["likedByMe"], true);
}

/// Others' likes show in a cached first page within `feed_page_ttl`: the
/// documented staleness bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn others_likes_show_within_the_page_ttl() {
    use minigram::Store as _;
    let (mut config, name) = common::fresh_config();
    config.feed_page_ttl = std::time::Duration::from_millis(300);
    let b = Pg::with_config(config, name).await;
    let s = b.store.clone();
    let new = |n: &str| minigram::store::NewUser {
        username: minigram::domain::Username::parse(n).unwrap(),
        email: None,
        password_hash: "x".into(),
    };
    let (me, other) = (
        s.create_user(new("viewer")).await.unwrap(),
        s.create_user(new("fan")).await.unwrap(),
    );
    let photo = s
        .insert_photo(minigram::store::NewPhoto {
            user_id: me,
            caption: minigram::domain::Caption::parse("").unwrap(),
            file_name: format!("{}.jpg", "d".repeat(64)),
            width: 1,
            height: 1,
            status: minigram::store::PhotoStatus::Ready,
        })
        .await
        .unwrap();
    let first = minigram::domain::PageQuery::first(20);
    assert_eq!(s.feed(me, first).await.unwrap().photos[0].like_count, 0);
    s.set_like(other, photo.id, true).await.unwrap();
    let cached = s.feed(me, first).await.unwrap().photos[0].like_count;
    assert!(cached <= 1, "at most the new count");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        s.feed(me, first).await.unwrap().photos[0].like_count,
        1,
        "fresh after the TTL"
    );
}

/// Many readers of one viewer's uncached feed at once: one of them
/// rebuilds it (the lock the cache read takes), the others wait for its
/// id list or read Postgres, and every one gets the same, right page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stampede_rebuilds_once() {
    let app = spawn_app::<Pg>().await;
    let me = app.make_user("crowded").await;
    let mut posted = Vec::new();
    for i in 0..3 {
        posted.push(
            app.posted_photo(&me, &format!("p{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    posted.reverse();
    let stats = app.backend.store.stats();
    let misses_before = stats.cache_misses.load(Ordering::Relaxed);
    let reads = (0..16).map(|_| feed_ids(&app, &me.token));
    let pages = futures_util::future::join_all(reads).await;
    for page in &pages {
        assert_eq!(page, &posted);
    }
    let misses = stats.cache_misses.load(Ordering::Relaxed) - misses_before;
    let waited =
        stats.stampede_waits.load(Ordering::Relaxed) + stats.cache_bypasses.load(Ordering::Relaxed);
    assert!(misses >= 1, "the feed was not cached");
    assert_eq!(misses - waited, 1, "exactly one reader rebuilt the feed");
}

/// Pages beyond the cached window are read from Postgres, seamlessly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_past_the_cached_window() {
    use minigram::Store as _;
    use minigram::domain::{Caption, PageQuery};
    use minigram::store::NewPhoto;
    let app = spawn_app::<Pg>().await;
    let me = app.make_user("pager").await;
    let total = stage_2::store::FEED_WINDOW + 30;
    for i in 0..total {
        app.store
            .insert_photo(NewPhoto {
                user_id: minigram::domain::UserId(me.id),
                caption: Caption::parse(&format!("p{i}")).unwrap(),
                file_name: format!("{}.jpg", "c".repeat(64)),
                width: 1,
                height: 1,
                status: minigram::store::PhotoStatus::Ready,
            })
            .await
            .unwrap();
    }
    let mut seen = 0;
    let mut path = "/api/feed?limit=100".to_owned();
    let mut last = i64::MAX;
    loop {
        let page: Value = app.get(&path, Some(&me.token)).await.json().await.unwrap();
        for p in page["photos"].as_array().unwrap() {
            let id = p["id"].as_i64().unwrap();
            assert!(id < last, "strictly newest first, no repeats");
            last = id;
            seen += 1;
        }
        match page["next"].as_str() {
            Some(n) => path = format!("/api/feed?limit=100&before={n}"),
            None => break,
        }
    }
    assert_eq!(seen, total);
    let direct = app
        .store
        .feed(minigram::domain::UserId(me.id), PageQuery::first(5))
        .await
        .unwrap();
    assert_eq!(direct.photos.len(), 5);
}

/// With `--feed-cache off` nothing is cached and feeds are still right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_off_reads_postgres_only() {
    use minigram::Store as _;
    let (mut config, name) = common::fresh_config();
    config.feed_cache = false;
    let b = Pg::with_config(config, name).await;
    let s = b.store.clone();
    let u = s
        .create_user(minigram::store::NewUser {
            username: minigram::domain::Username::parse("nocache").unwrap(),
            email: None,
            password_hash: "x".into(),
        })
        .await
        .unwrap();
    let page = s
        .feed(u, minigram::domain::PageQuery::first(10))
        .await
        .unwrap();
    assert!(page.photos.is_empty());
    assert_eq!(b.redis_keys("feed:*").await, 0);
    assert_eq!(b.store.stats().cache_misses.load(Ordering::Relaxed), 0);
}

/// A client choosing its page size cannot multiply what the cache holds:
/// first pages of every `limit` are served right, but only the default
/// size (20) is kept as a rendered page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_default_page_size_is_kept_rendered() {
    let app = spawn_app::<Pg>().await;
    let me = app.make_user("sizes").await;
    for i in 0..3 {
        app.posted_photo(&me, &format!("p{i}")).await;
    }
    for limit in [1, 2, 7, 20, 55, 100] {
        let page: Value = app
            .get(&format!("/api/feed?limit={limit}"), Some(&me.token))
            .await
            .json()
            .await
            .unwrap();
        let want = 3.min(limit);
        assert_eq!(
            page["photos"].as_array().unwrap().len(),
            want,
            "limit {limit}"
        );
    }
    let mut conn = app.backend.store.redis_pool().get().await.expect("redis");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(format!(
            "{}:feedpage:{}",
            app.backend.store.config().redis_prefix,
            me.id
        ))
        .query_async(&mut conn.conn)
        .await
        .expect("HKEYS");
    assert_eq!(fields, vec!["20".to_owned()]);
}

/// The round trips a request makes, as its Server-Timing says and the
/// metrics add up (the round-trip budget): a cached first feed page is one
/// Redis round trip (the session and the page in one script) and no
/// Postgres; a miss at most three; a like or a follow is the session, one
/// statement and the invalidation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_timing_counts_round_trips() {
    let app = spawn_app::<Pg>().await;
    let me = app.make_user("tripper").await;
    let photo = app.posted_photo(&me, "mine").await;
    // The upload dropped the feed: nothing of it is cached.
    let miss = app.get("/api/feed", Some(&me.token)).await;
    assert_eq!(miss.status(), 200);
    let hit = app.get("/api/feed", Some(&me.token)).await;
    assert_eq!(hit.status(), 200);
    let hit_trips = trips(&hit);
    let hit_body: Value = hit.json().await.unwrap();
    // The rendered page expires (10 s) before the id list (60 s): drop it.
    drop_cached_page(&app, me.id).await;
    let page_miss = app.get("/api/feed", Some(&me.token)).await;
    let page_miss_trips = trips(&page_miss);
    assert_eq!(page_miss.json::<Value>().await.unwrap(), hit_body);
    // Pages the cache does not keep whole (another size, an older page):
    // the session and the id list in one script, then their photos.
    let other_size = trips(&app.get("/api/feed?limit=10", Some(&me.token)).await);
    let older = app
        .get(
            &format!("/api/feed?before={}", photo["id"].as_i64().unwrap() + 1),
            Some(&me.token),
        )
        .await;
    assert_eq!(older.status(), 200);
    let older = trips(&older);
    let liked = app
        .send(
            Method::POST,
            &format!("/api/photos/{}/like", photo["id"]),
            Some(&me.token),
        )
        .await;
    assert_eq!(liked.status(), 200);
    let idol = app.make_user("idol").await;
    let followed = app
        .send(
            Method::POST,
            &format!("/api/users/{}/follow", idol.id),
            Some(&me.token),
        )
        .await;
    assert_eq!(followed.status(), 200);
    eprintln!("round trips of a follow: {:?}", trips(&followed));
    assert_eq!(
        trips(&followed),
        (1, 2),
        "follow: session, one statement, invalidation"
    );
    eprintln!(
        "round trips (postgres, redis): feed miss {:?}, page miss {page_miss_trips:?}, \
         limit=10 {other_size:?}, older page {older:?}, like {:?}",
        trips(&miss),
        trips(&liked)
    );
    assert_eq!(other_size, (1, 1), "another page size: script, photos");
    assert_eq!(older, (1, 1), "an older page: script, photos");
    assert_eq!(
        trips(&miss),
        (1, 2),
        "a miss: session and cache read in one script, the id window and \
         the page in one statement, both stored in one script"
    );
    assert_eq!(
        page_miss_trips,
        (1, 2),
        "a page miss: session and id list in one script, the page's photos \
         by id, the page stored"
    );
    assert_eq!(
        trips(&liked),
        (1, 2),
        "like: session, statement, invalidation"
    );
    assert_eq!(
        hit_trips,
        (0, 1),
        "cached feed: session and page in one script"
    );

    // The metric and the live page's route table add them up per second
    // (over finished seconds: wait for this one and the sampler's tick).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let redis_feed = text
        .lines()
        .find(|l| {
            l.starts_with("minigram_round_trips_total")
                && l.contains("http_route=\"/api/feed\"")
                && l.contains("server=\"redis\"")
        })
        .expect("the feed's Redis round trips are a metric");
    let total: u64 = redis_feed.rsplit(' ').next().unwrap().parse().unwrap();
    // The recorder is one per process: other tests' feeds count too.
    assert!(total >= 5, "{total}");
    let live: Value = app.get("/api/metrics", None).await.json().await.unwrap();
    let feed = live["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/feed")
        .expect("the feed in the route table");
    let redis = feed["redisTrips"].as_f64().unwrap();
    assert!(
        (1.0..=2.0).contains(&redis),
        "Redis trips per feed: {redis}"
    );
    let pg = feed["pgTrips"].as_f64().unwrap();
    assert!(pg > 0.0 && pg < 1.0, "Postgres trips per feed: {pg}");
}

/// A connection that sat idle longer than `pg_ping_idle_after` is pinged
/// before use, and the ping is counted in the request that paid for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_connections_ping_is_counted() {
    let (mut config, name) = common::fresh_config();
    config.pg_ping_idle_after = std::time::Duration::ZERO;
    let backend = Pg::with_config(config, name).await;
    let app = contract::spawn_app_on(backend, minigram::Settings::default()).await;
    // The first read may open a new connection (not pinged); the second
    // takes one back from the pool, once sqlx has returned it there (it
    // pings a connection as it returns, after the answer has gone).
    assert_eq!(app.get("/api/explore", None).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let again = app.get("/api/explore", None).await;
    assert_eq!(again.status(), 200);
    assert_eq!(trips(&again), (2, 0), "the ping, then the statement");
}

fn trips(res: &reqwest::Response) -> (u32, u32) {
    use minigram::timing::parse_trips;
    let header = res.headers()["server-timing"].to_str().unwrap();
    (
        parse_trips(header, "pg-trips"),
        parse_trips(header, "redis-trips"),
    )
}

async fn drop_cached_page(app: &TestApp<Pg>, user: i64) {
    let mut conn = app.backend.store.redis_pool().get().await.expect("redis");
    let key = format!(
        "{}:feedpage:{user}",
        app.backend.store.config().redis_prefix
    );
    let dropped: i64 = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut conn.conn)
        .await
        .expect("DEL");
    assert_eq!(dropped, 1, "the first page was cached");
}

/// A logout ends a session at once even for the one-round-trip cached
/// feed: the script reads the session key as it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_ends_the_cached_feed_at_once() {
    let app = spawn_app::<Pg>().await;
    let me = app.make_user("leaving").await;
    for _ in 0..2 {
        assert_eq!(app.get("/api/feed", Some(&me.token)).await.status(), 200);
    }
    let out = app.send(Method::POST, "/api/logout", Some(&me.token)).await;
    assert_eq!(out.status(), 204);
    let after = app.get("/api/feed", Some(&me.token)).await;
    assert_eq!(after.status(), 401);
    let body: Value = after.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
}
