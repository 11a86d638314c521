//! The HTTP contract (DESIGN.md, "HTTP contract"), accounts: register,
//! login, logout, tokens, profiles and follows; each route's success path
//! and failure codes, bad input that must change nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Backend, assert_error, spawn_app};

/// A new user registers and gets a token that works right away.
pub async fn register_then_use_the_token<B: Backend>() {
    let app = spawn_app::<B>().await;
    let res = app
        .post_json(
            "/api/register",
            &json!({"username": "alice", "password": "password123", "email": "a@example.com"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "alice");
    assert!(body["userId"].as_i64().unwrap() > 0);
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);

    let me: Value = app.get("/api/me", Some(token)).await.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["email"], "a@example.com");
    assert_eq!(me["followers"], 0);
}

/// Every bad registration is a 4xx with its code, and creates nobody.
pub async fn register_rejects_bad_input_and_changes_nothing<B: Backend>() {
    let app = spawn_app::<B>().await;
    app.registered("taken").await;
    let long_name = "x".repeat(31);
    let long_pw = "p".repeat(129);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "taken name",
            json!({"username": "taken", "password": "password123"}),
            409,
            "username_taken",
        ),
        (
            "taken name, other case",
            json!({"username": "TAKEN", "password": "password123"}),
            409,
            "username_taken",
        ),
        (
            "empty name",
            json!({"username": "", "password": "password123"}),
            422,
            "invalid_username",
        ),
        (
            "short name",
            json!({"username": "ab", "password": "password123"}),
            422,
            "invalid_username",
        ),
        (
            "long name",
            json!({"username": long_name, "password": "password123"}),
            422,
            "invalid_username",
        ),
        (
            "space in name",
            json!({"username": "a b c", "password": "password123"}),
            422,
            "invalid_username",
        ),
        (
            "control char",
            json!({"username": "ab\u{1}c", "password": "password123"}),
            422,
            "invalid_username",
        ),
        (
            "traversal name",
            json!({"username": "../etc", "password": "password123"}),
            422,
            "invalid_username",
        ),
        (
            "short password",
            json!({"username": "bobby", "password": "short"}),
            422,
            "invalid_password",
        ),
        (
            "huge password",
            json!({"username": "bobby", "password": long_pw}),
            422,
            "invalid_password",
        ),
        (
            "bad email",
            json!({"username": "bobby", "password": "password123", "email": "nope"}),
            422,
            "invalid_email",
        ),
        (
            "wrong type",
            json!({"username": 5, "password": "password123"}),
            422,
            "invalid_body",
        ),
        (
            "missing password",
            json!({"username": "bobby"}),
            422,
            "invalid_body",
        ),
        ("array body", json!([1, 2]), 422, "invalid_body"),
    ];
    for (case, body, status, code) in cases {
        assert_error(
            app.post_json("/api/register", &body).await,
            status,
            code,
            case,
        )
        .await;
    }
    // (case, content type, body, status, code)
    type RawCase<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let raw: Vec<RawCase> = vec![
        (
            "malformed JSON",
            Some("application/json"),
            b"{\"username\":".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "not UTF-8",
            Some("application/json"),
            b"{\"username\":\"\xff\xfe\"}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "empty body",
            Some("application/json"),
            Vec::new(),
            400,
            "invalid_json",
        ),
        (
            "no content type",
            None,
            b"{}".to_vec(),
            415,
            "unsupported_content_type",
        ),
        (
            "form content type",
            Some("application/x-www-form-urlencoded"),
            b"a=b".to_vec(),
            415,
            "unsupported_content_type",
        ),
        (
            "huge body",
            Some("application/json"),
            vec![b' '; 200_000],
            413,
            "payload_too_large",
        ),
    ];
    for (case, ct, body, status, code) in raw {
        assert_error(
            app.post_raw("/api/register", ct, body).await,
            status,
            code,
            case,
        )
        .await;
    }
    assert_eq!(
        app.count("users").await,
        1,
        "no failed registration created a user"
    );
}

/// Login gives a new token each time; unknown user and wrong password get
/// the same answer.
pub async fn login_and_its_failures<B: Backend>() {
    let app = spawn_app::<B>().await;
    let alice = app.registered("alice").await;
    let res = app.login("ALICE", "password123").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["userId"], alice.id);
    assert_ne!(
        body["token"],
        alice.token.as_str(),
        "a new token on every login"
    );

    let wrong = app.login("alice", "password124").await;
    let unknown = app.login("nobody", "password123").await;
    let (w_status, u_status) = (wrong.status(), unknown.status());
    let w: Value = wrong.json().await.unwrap();
    let u: Value = unknown.json().await.unwrap();
    assert_eq!(
        (w_status, u_status),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(w, u, "wrong password and unknown user must look the same");
    assert_eq!(w["code"], "invalid_credentials");

    for (case, body) in [
        (
            "bad username shape",
            json!({"username": "a b", "password": "password123"}),
        ),
        (
            "empty password",
            json!({"username": "alice", "password": ""}),
        ),
    ] {
        assert_error(
            app.post_json("/api/login", &body).await,
            401,
            "invalid_credentials",
            case,
        )
        .await;
    }
    assert_error(
        app.post_json("/api/login", &json!({"username": "alice"}))
            .await,
        422,
        "invalid_body",
        "missing password",
    )
    .await;
}

/// Logout revokes the token on the server: it stops working at once.
pub async fn logout_revokes_the_token<B: Backend>() {
    let app = spawn_app::<B>().await;
    let alice = app.registered("alice").await;
    let res = app
        .send(Method::POST, "/api/logout", Some(&alice.token))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get("/api/me", Some(&alice.token)).await,
        401,
        "unauthorized",
        "revoked token",
    )
    .await;
    assert_error(
        app.send(Method::POST, "/api/logout", Some(&alice.token))
            .await,
        401,
        "unauthorized",
        "logout twice",
    )
    .await;
    assert_error(
        app.send(Method::POST, "/api/logout", None).await,
        401,
        "unauthorized",
        "logout anonymous",
    )
    .await;
    assert_eq!(app.count("sessions").await, 0);
}

/// Missing, malformed, forged and wrong-scheme tokens are all 401.
pub async fn bad_tokens_are_refused<B: Backend>() {
    let app = spawn_app::<B>().await;
    app.registered("alice").await;
    let forged = "ab".repeat(32);
    for (case, header) in [
        ("no header", None),
        ("forged token", Some(format!("Bearer {forged}"))),
        ("short token", Some("Bearer abc".to_owned())),
        ("non-hex token", Some(format!("Bearer {}", "zz".repeat(32)))),
        (
            "basic scheme",
            Some("Basic YWxpY2U6cGFzc3dvcmQxMjM=".to_owned()),
        ),
        ("empty bearer", Some("Bearer ".to_owned())),
    ] {
        let mut req = app.client.get(app.url("/api/me"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        assert_error(req.send().await.unwrap(), 401, "unauthorized", case).await;
    }
    // Optional-auth routes still refuse a token that is sent but invalid.
    assert_error(
        app.get("/api/explore", Some(&forged)).await,
        401,
        "unauthorized",
        "explore with forged",
    )
    .await;
    assert_eq!(app.get("/api/explore", None).await.status(), StatusCode::OK);
}

/// Profiles carry counts; ids that are not positive integers are 400.
pub async fn user_profiles_and_bad_ids<B: Backend>() {
    let app = spawn_app::<B>().await;
    let alice = app.registered("alice").await;
    let bob = app.make_user("bob").await;
    app.posted_photo(&alice, "hi").await;
    app.send(
        Method::POST,
        &format!("/api/users/{}/follow", alice.id),
        Some(&bob.token),
    )
    .await;

    let res = app
        .get(&format!("/api/users/{}", alice.id), Some(&bob.token))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let p: Value = res.json().await.unwrap();
    assert_eq!(
        p,
        json!({"id": alice.id, "username": "alice", "followers": 1, "following": 0, "photos": 1, "followedByMe": true})
    );
    let anon: Value = app
        .get(&format!("/api/users/{}", alice.id), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(anon["followedByMe"], false);

    assert_error(
        app.get("/api/users/999999", None).await,
        404,
        "not_found",
        "missing user",
    )
    .await;
    for bad in ["abc", "-1", "0", "99999999999999999999", "1.5", "%20"] {
        assert_error(
            app.get(&format!("/api/users/{bad}"), None).await,
            400,
            "invalid_id",
            bad,
        )
        .await;
        assert_error(
            app.get(&format!("/api/photos/{bad}"), None).await,
            400,
            "invalid_id",
            bad,
        )
        .await;
        assert_error(
            app.send(
                Method::POST,
                &format!("/api/photos/{bad}/like"),
                Some(&alice.token),
            )
            .await,
            400,
            "invalid_id",
            bad,
        )
        .await;
        assert_error(
            app.send(
                Method::POST,
                &format!("/api/users/{bad}/follow"),
                Some(&alice.token),
            )
            .await,
            400,
            "invalid_id",
            bad,
        )
        .await;
    }
}

/// Follow and unfollow are idempotent and return the exact follower count.
pub async fn follow_and_unfollow<B: Backend>() {
    let app = spawn_app::<B>().await;
    let alice = app.make_user("alice").await;
    let bob = app.make_user("bob").await;
    let path = format!("/api/users/{}/follow", bob.id);
    for (method, expected) in [
        (Method::POST, json!({"following": true, "followers": 1})),
        (Method::POST, json!({"following": true, "followers": 1})),
        (Method::DELETE, json!({"following": false, "followers": 0})),
        (Method::DELETE, json!({"following": false, "followers": 0})),
    ] {
        let res = app.send(method.clone(), &path, Some(&alice.token)).await;
        assert_eq!(res.status(), StatusCode::OK, "{method}");
        assert_eq!(res.json::<Value>().await.unwrap(), expected, "{method}");
    }
    let own = format!("/api/users/{}/follow", alice.id);
    assert_error(
        app.send(Method::POST, &own, Some(&alice.token)).await,
        422,
        "cannot_follow_self",
        "self follow",
    )
    .await;
    assert_error(
        app.send(Method::POST, "/api/users/424242/follow", Some(&alice.token))
            .await,
        404,
        "not_found",
        "missing user",
    )
    .await;
    assert_error(
        app.send(Method::POST, &path, None).await,
        401,
        "unauthorized",
        "anonymous",
    )
    .await;
    assert_eq!(app.count("follows").await, 0);
}

/// Generates one `#[tokio::test]` per case of this suite for a backend
/// (used by `contract_tests!`).
#[macro_export]
macro_rules! accounts_contract_tests {
    ($backend:ty) => {
        $crate::__contract_cases!($backend; accounts;
            register_then_use_the_token,
            register_rejects_bad_input_and_changes_nothing,
            login_and_its_failures,
            logout_revokes_the_token,
            bad_tokens_are_refused,
            user_profiles_and_bad_ids,
            follow_and_unfollow
        );
    };
}
