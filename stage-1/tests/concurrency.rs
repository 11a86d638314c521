//! Counts stay exact when many requests race for the same rows.

mod common;

use common::spawn_app;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// 50 users like one photo at the same moment: likeCount is exactly 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_users_like_one_photo_at_once() {
    let app = spawn_app().await;
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
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_likes_twenty_times_at_once() {
    let app = spawn_app().await;
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
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_name() {
    let app = spawn_app().await;
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
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_users_follow_one_at_once() {
    let app = spawn_app().await;
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
