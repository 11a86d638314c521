//! The storage contract suite: the `Store` use cases called directly, so a
//! backend's semantics (uniqueness, idempotency, exact counts, ordering,
//! expiry) are checked without HTTP in between.

use super::Backend;
use minigram::domain::{Caption, Cursor, Email, PageLimit, PageQuery, PhotoId, UserId, Username};
use minigram::seed::{self, SeedArgs};
use minigram::store::{NewPhoto, NewSession, NewUser, SessionUser, Store, StoreError};

/// A new user named `name` (a fixed, valid hash: no hashing in storage tests).
pub fn user(name: &str) -> NewUser {
    NewUser {
        username: Username::parse(name).unwrap(),
        email: Some(Email::parse(&format!("{name}@example.com")).unwrap()),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
    }
}

/// A ready photo of `owner`, inserted straight into the store.
pub async fn photo<S: Store>(store: &S, owner: UserId, caption: &str) -> PhotoId {
    store
        .insert_photo(NewPhoto {
            user_id: owner,
            caption: Caption::parse(caption).unwrap(),
            file_name: format!("{}.jpg", "a".repeat(64)),
            width: 10,
            height: 20,
            status: minigram::store::PhotoStatus::Ready,
        })
        .await
        .unwrap()
        .id
}

/// A page of `limit` photos older than `before`.
pub fn page(limit: u32, before: Option<PhotoId>) -> PageQuery {
    PageQuery {
        limit: PageLimit::new(limit),
        before: before.map(Cursor),
    }
}

/// A new store is empty and answers a ping.
pub async fn empty_store_pings<B: Backend>() {
    let b = B::fresh().await;
    let s = b.store();
    s.ping().await.unwrap();
    assert!(s.is_empty().await.unwrap());
    s.create_user(user("first")).await.unwrap();
    assert!(!s.is_empty().await.unwrap());
}

/// Usernames are unique ignoring case, and found ignoring case.
pub async fn usernames_are_unique_ignoring_case<B: Backend>() {
    let b = B::fresh().await;
    let s = b.store();
    let id = s.create_user(user("Ann")).await.unwrap();
    assert!(matches!(
        s.create_user(user("ann")).await,
        Err(StoreError::UsernameTaken)
    ));
    let creds = s.credentials_for("ANN").await.unwrap().unwrap();
    assert_eq!((creds.user_id, creds.username.as_str()), (id, "Ann"));
    assert!(s.credentials_for("nobody").await.unwrap().is_none());
    let me = s.my_profile(id).await.unwrap().unwrap();
    assert_eq!(me.email.unwrap().as_str(), "Ann@example.com");
}

/// Sessions resolve to their user until they expire or are revoked.
pub async fn sessions_expire_and_revoke<B: Backend>() {
    let b = B::fresh().await;
    let s = b.store();
    let id = s.create_user(user("sam")).await.unwrap();
    let sam = SessionUser {
        user_id: id,
        username: Username::parse("sam").unwrap(),
    };
    let now = minigram::app::now_secs();
    s.create_session(NewSession {
        token_hash: [1; 32],
        user: sam.clone(),
        expires_at: now + 60,
    })
    .await
    .unwrap();
    s.create_session(NewSession {
        token_hash: [2; 32],
        user: sam,
        expires_at: now - 1,
    })
    .await
    .unwrap();
    assert_eq!(s.session_user([1; 32]).await.unwrap().unwrap().user_id, id);
    assert!(s.session_user([2; 32]).await.unwrap().is_none(), "expired");
    assert!(s.session_user([3; 32]).await.unwrap().is_none(), "unknown");
    assert!(s.revoke_session([1; 32]).await.unwrap());
    assert!(s.session_user([1; 32]).await.unwrap().is_none(), "revoked");
    assert!(!s.revoke_session([1; 32]).await.unwrap());
}

/// Likes are idempotent and the count is exact; unknown photos are NotFound.
pub async fn likes_are_idempotent_and_counted<B: Backend>() {
    let b = B::fresh().await;
    let s = b.store();
    let a = s.create_user(user("alpha")).await.unwrap();
    let z = s.create_user(user("zulu")).await.unwrap();
    let p = photo(&s, a, "x").await;
    assert_eq!(s.set_like(a, p, true).await.unwrap().like_count, 1);
    assert_eq!(s.set_like(a, p, true).await.unwrap().like_count, 1);
    assert_eq!(s.set_like(z, p, true).await.unwrap().like_count, 2);
    let seen = s.photo(Some(z), p).await.unwrap().unwrap();
    assert!(seen.liked_by_me && seen.like_count == 2);
    assert_eq!(s.set_like(a, p, false).await.unwrap().like_count, 1);
    assert_eq!(s.set_like(a, p, false).await.unwrap().like_count, 1);
    assert!(!s.photo(Some(a), p).await.unwrap().unwrap().liked_by_me);
    assert!(matches!(
        s.set_like(a, PhotoId(999_999), true).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(b.count("likes").await, 1);
}

/// Follows are idempotent, counted exactly, and show in profiles.
pub async fn follows_are_idempotent_and_counted<B: Backend>() {
    let b = B::fresh().await;
    let s = b.store();
    let a = s.create_user(user("amy")).await.unwrap();
    let z = s.create_user(user("zed")).await.unwrap();
    for _ in 0..2 {
        let st = s.set_follow(a, z, true).await.unwrap();
        assert!(st.following && st.followers == 1);
    }
    let zp = s.user_profile(Some(a), z).await.unwrap().unwrap();
    assert_eq!(
        (zp.followers, zp.following, zp.followed_by_me),
        (1, 0, true)
    );
    let ap = s.user_profile(None, a).await.unwrap().unwrap();
    assert_eq!(
        (ap.followers, ap.following, ap.followed_by_me),
        (0, 1, false)
    );
    let st = s.set_follow(a, z, false).await.unwrap();
    assert!(!st.following && st.followers == 0);
    assert!(matches!(
        s.set_follow(a, UserId(999_999), true).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        s.user_profile(None, UserId(999_999))
            .await
            .unwrap()
            .is_none()
    );
}

/// The feed is the viewer's and followees' photos, newest first, paged.
pub async fn feed_pages_newest_first<B: Backend>() {
    let b = B::fresh().await;
    let s = b.store();
    let me = s.create_user(user("me_me")).await.unwrap();
    let friend = s.create_user(user("friend")).await.unwrap();
    let other = s.create_user(user("other")).await.unwrap();
    s.set_follow(me, friend, true).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..4 {
        expected.push(photo(&s, friend, &format!("f{i}")).await);
        photo(&s, other, "o").await;
        expected.push(photo(&s, me, &format!("m{i}")).await);
    }
    expected.reverse();
    let first = s.feed(me, page(5, None)).await.unwrap();
    assert_eq!(
        first.photos.iter().map(|p| p.id).collect::<Vec<_>>(),
        expected[..5]
    );
    let cursor = first.next.expect("more pages");
    let rest = s
        .feed(me, page(5, Some(PhotoId(cursor.parse().unwrap()))))
        .await
        .unwrap();
    assert_eq!(
        rest.photos.iter().map(|p| p.id).collect::<Vec<_>>(),
        expected[5..]
    );
    assert!(rest.next.is_none());
    let all = s.explore(None, page(100, None)).await.unwrap();
    assert_eq!(all.photos.len(), 12);
    assert!(all.photos.windows(2).all(|w| w[0].id > w[1].id));
    let theirs = s
        .user_photos(None, other, page(100, None))
        .await
        .unwrap()
        .unwrap();
    assert!(
        theirs
            .photos
            .iter()
            .all(|p| p.user_id == other && p.username == "other")
    );
    assert!(
        s.user_photos(None, UserId(999_999), page(10, None))
            .await
            .unwrap()
            .is_none()
    );
}

/// An import writes exactly the generated rows, with consistent counts.
pub async fn import_writes_a_consistent_dataset<B: Backend>() {
    let b = B::fresh().await;
    let s = b.store();
    let args = SeedArgs {
        users: 30,
        photos: 120,
        follows_per_user: 6,
        likes: 400,
        celebrity_percent: 0,
        seed: 9,
        argon2: minigram::auth::PasswordCost::OWASP,
    };
    let names = vec![(format!("{}.jpg", "b".repeat(64)), 8, 8)];
    let data = seed::generate(
        &args,
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
        &names,
    );
    let follows_of_user1 = data.follows.iter().filter(|(a, _)| *a == 0).count();
    let summary = s.import(data).await.unwrap();
    assert_eq!(
        (
            summary.users,
            summary.photos,
            summary.follows,
            summary.likes
        ),
        (30, 120, 180, 400)
    );
    assert_eq!(b.count("users").await, 30);
    assert_eq!(b.count("likes").await, 400);
    let user1 = s.credentials_for("user1").await.unwrap().unwrap();
    let profile = s.user_profile(None, user1.user_id).await.unwrap().unwrap();
    assert_eq!(profile.following as usize, follows_of_user1);
    let all = s.explore(None, page(100, None)).await.unwrap();
    assert!(
        all.photos
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at),
        "ids follow time"
    );
    let mut likes_seen = 0;
    let mut cursor = None;
    loop {
        let p = s.explore(None, page(100, cursor)).await.unwrap();
        likes_seen += p.photos.iter().map(|p| p.like_count).sum::<i64>();
        match p.next {
            Some(n) => cursor = Some(PhotoId(n.parse().unwrap())),
            None => break,
        }
    }
    assert_eq!(likes_seen, 400, "like counts match like rows");
}

/// Generates one `#[tokio::test]` per storage case for a backend (used by
/// `contract_tests!`).
#[macro_export]
macro_rules! storage_contract_tests {
    ($backend:ty) => {
        $crate::__contract_cases!($backend; storage;
            empty_store_pings,
            usernames_are_unique_ignoring_case,
            sessions_expire_and_revoke,
            likes_are_idempotent_and_counted,
            follows_are_idempotent_and_counted,
            feed_pages_newest_first,
            import_writes_a_consistent_dataset
        );
    };
}
