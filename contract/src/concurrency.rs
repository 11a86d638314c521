//! The HTTP contract under concurrency: counts stay exact when many
//! clients like, follow, register or upload at the same moment.

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{Backend, files_in, photo_form, png, spawn_app};

/// 50 users like one photo at the same moment: likeCount is exactly 50.
pub async fn fifty_users_like_one_photo_at_once<B: Backend>() {
    let app = spawn_app::<B>().await;
    let owner = app.make_user("owner").await;
    let photo = app.posted_photo(&owner, "popular").await;
    let path = format!("/api/photos/{}/like", photo["id"]);
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(app.make_user(&format!("fan{i}")).await);
    }
    let responses = join_all(
        users
            .iter()
            .map(|u| app.send(Method::POST, &path, Some(&u.token))),
    )
    .await;
    for res in responses {
        assert_eq!(res.status(), StatusCode::OK);
    }
    let got: Value = app
        .get(&format!("/api/photos/{}", photo["id"]), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["likeCount"], 50);
    assert_eq!(app.count("likes").await, 50);
}

/// One user likes the same photo 20 times concurrently: one like, count 1.
pub async fn one_user_likes_twenty_times_at_once<B: Backend>() {
    let app = spawn_app::<B>().await;
    let user = app.make_user("eager").await;
    let photo = app.posted_photo(&user, "").await;
    let path = format!("/api/photos/{}/like", photo["id"]);
    let responses =
        join_all((0..20).map(|_| app.send(Method::POST, &path, Some(&user.token)))).await;
    for res in responses {
        assert_eq!(res.status(), StatusCode::OK);
        let state: Value = res.json().await.unwrap();
        assert_eq!(state["likeCount"], 1);
    }
    assert_eq!(app.count("likes").await, 1);
}

/// Concurrent registrations of one name: exactly one 201, the rest 409.
pub async fn concurrent_registrations_of_one_name<B: Backend>() {
    let app = spawn_app::<B>().await;
    let responses = join_all((0..12).map(|i| {
        // Different case, same name: uniqueness is case-insensitive.
        let name = if i % 2 == 0 { "racer" } else { "RACER" };
        app.register(name, "password123")
    }))
    .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        11,
        "{statuses:?}"
    );
    assert_eq!(app.count("users").await, 1);
}

/// Many follows of one user at once: the follower count is exact.
pub async fn thirty_users_follow_one_at_once<B: Backend>() {
    let app = spawn_app::<B>().await;
    let star = app.make_user("star").await;
    let mut fans = Vec::new();
    for i in 0..30 {
        fans.push(app.make_user(&format!("fan{i}")).await);
    }
    let path = format!("/api/users/{}/follow", star.id);
    let responses = join_all(
        fans.iter()
            .map(|u| app.send(Method::POST, &path, Some(&u.token))),
    )
    .await;
    assert!(responses.iter().all(|r| r.status() == StatusCode::OK));
    let profile: Value = app
        .get(&format!("/api/users/{}", star.id), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["followers"], 30);
}

/// Many users upload the very same picture at once: every upload succeeds
/// (files are content-addressed, so they share one file).
pub async fn same_picture_uploaded_at_once<B: Backend>() {
    let app = spawn_app::<B>().await;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(app.make_user(&format!("twin{i}")).await);
    }
    let picture = png(40, 40);
    let responses = join_all(
        users
            .iter()
            .map(|u| app.upload(Some(&u.token), photo_form(picture.clone(), "same.png", ""))),
    )
    .await;
    let urls: Vec<String> = join_all(responses.into_iter().map(|r| async move {
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned()
    }))
    .await;
    assert!(urls.windows(2).all(|w| w[0] == w[1]), "one content hash");
    assert_eq!(app.count("photos").await, 12);
    assert_eq!(files_in(&app.uploads_dir()), 1);
}

/// Generates one `#[tokio::test]` per case of this suite for a backend
/// (used by `contract_tests!`).
#[macro_export]
macro_rules! concurrency_contract_tests {
    ($backend:ty) => {
        $crate::__contract_cases!($backend; concurrency;
            fifty_users_like_one_photo_at_once,
            one_user_likes_twenty_times_at_once,
            concurrent_registrations_of_one_name,
            thirty_users_follow_one_at_once,
            same_picture_uploaded_at_once
        );
    };
}
