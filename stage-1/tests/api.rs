//! The HTTP contract of DESIGN.md, route by route: each success path and
//! each failure code, against the real stage-1 server and a real SQLite file.

mod common;

use common::{assert_error, photo_form, png, spawn_app};
use reqwest::{Method, StatusCode, multipart};
use serde_json::{Value, json};

/// A new user registers and gets a token that works right away.
#[tokio::test]
async fn register_then_use_the_token() {
    let app = spawn_app().await;
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
#[tokio::test]
async fn register_rejects_bad_input_and_changes_nothing() {
    let app = spawn_app().await;
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
#[tokio::test]
async fn login_and_its_failures() {
    let app = spawn_app().await;
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
#[tokio::test]
async fn logout_revokes_the_token() {
    let app = spawn_app().await;
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
#[tokio::test]
async fn bad_tokens_are_refused() {
    let app = spawn_app().await;
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
#[tokio::test]
async fn user_profiles_and_bad_ids() {
    let app = spawn_app().await;
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
#[tokio::test]
async fn follow_and_unfollow() {
    let app = spawn_app().await;
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

/// A valid image is stored re-encoded under a content hash and served with
/// long-lived cache headers.
#[tokio::test]
async fn upload_and_serve_a_photo() {
    let app = spawn_app().await;
    let alice = app.make_user("alice").await;
    let res = app
        .upload(
            Some(&alice.token),
            photo_form(png(64, 48), "../../etc/passwd", "  my cat  "),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let photo: Value = res.json().await.unwrap();
    assert_eq!(photo["caption"], "my cat");
    assert_eq!(
        (photo["width"].as_u64(), photo["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(photo["userId"], alice.id);
    assert_eq!(photo["username"], "alice");
    assert_eq!(photo["likeCount"], 0);
    assert_eq!(photo["likedByMe"], false);
    let url = photo["url"].as_str().unwrap();
    assert!(
        url.starts_with("/uploads/") && url.ends_with(".jpg") && !url.contains("passwd"),
        "{url}"
    );

    let img = app.get(url, None).await;
    assert_eq!(img.status(), StatusCode::OK);
    assert_eq!(img.headers()["content-type"], "image/jpeg");
    assert!(
        img.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=31536000")
    );
    let bytes = img.bytes().await.unwrap();
    assert_eq!(
        &bytes[..3],
        &[0xFF, 0xD8, 0xFF],
        "served bytes are our JPEG"
    );

    let got: Value = app
        .get(&format!("/api/photos/{}", photo["id"]), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, photo);
    assert_error(
        app.get("/api/photos/424242", None).await,
        404,
        "not_found",
        "missing photo",
    )
    .await;
    for bad in [
        "..%2F..%2Fetc%2Fpasswd",
        "abc.jpg",
        &format!("{}.jpg", "0".repeat(64)),
    ] {
        assert_error(
            app.get(&format!("/uploads/{bad}"), None).await,
            404,
            "not_found",
            bad,
        )
        .await;
    }
}

/// Every bad upload is a 4xx with its code and stores nothing.
#[tokio::test]
async fn upload_rejects_bad_files_and_stores_nothing() {
    let app = spawn_app().await;
    let alice = app.make_user("alice").await;
    let full = png(64, 64);
    let truncated = full[..full.len() / 2].to_vec();
    // A real, tiny PNG file that is 9000 pixels wide: over the 8192 limit.
    let wide = png(9000, 2);
    let cases: Vec<(&str, multipart::Form, u16, &str)> = vec![
        (
            "text file named .jpg",
            photo_form(b"just some text, not a photo".to_vec(), "cat.jpg", ""),
            415,
            "not_an_image",
        ),
        (
            "truncated image",
            photo_form(truncated, "t.png", ""),
            415,
            "invalid_image",
        ),
        (
            "zero bytes",
            photo_form(Vec::new(), "e.png", ""),
            415,
            "not_an_image",
        ),
        (
            "missing photo field",
            multipart::Form::new().text("caption", "hi"),
            400,
            "missing_photo",
        ),
        (
            "caption too long",
            photo_form(png(8, 8), "c.png", &"x".repeat(2201)),
            422,
            "invalid_caption",
        ),
        (
            "caption control char",
            photo_form(png(8, 8), "c.png", "bad\u{7}"),
            422,
            "invalid_caption",
        ),
        (
            "oversized pixels",
            photo_form(wide, "w.png", ""),
            422,
            "image_too_large",
        ),
    ];
    for (case, form, status, code) in cases {
        assert_error(
            app.upload(Some(&alice.token), form).await,
            status,
            code,
            case,
        )
        .await;
    }
    let not_multipart = app
        .client
        .post(app.url("/api/photos"))
        .bearer_auth(&alice.token)
        .json(&json!({"photo": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(not_multipart, 400, "invalid_multipart", "JSON body").await;
    assert_error(
        app.upload(None, photo_form(png(8, 8), "a.png", "")).await,
        401,
        "unauthorized",
        "anonymous",
    )
    .await;
    assert_eq!(app.count("photos").await, 0);
    let files = std::fs::read_dir(app.dir.path().join("uploads"))
        .unwrap()
        .count();
    assert_eq!(files, 0, "no file kept from a rejected upload");
}

/// An upload over the size limit is refused with 413.
#[tokio::test]
async fn oversized_upload_is_413() {
    let app = common::spawn_app_with(minigram::Settings {
        max_upload_bytes: 100_000,
        ..Default::default()
    })
    .await;
    let alice = app.make_user("alice").await;
    // Declared length over the limit: refused before the body is read.
    let big = vec![0u8; 300_000];
    let res = app
        .upload(Some(&alice.token), photo_form(big, "big.png", ""))
        .await;
    assert_error(res, 413, "payload_too_large", "declared length").await;
    // Streamed (no Content-Length): refused once the limit is crossed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![0u8; 10_000])).collect();
    let part = multipart::Part::stream(reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks,
    )))
    .file_name("big.png");
    let res = app
        .upload(
            Some(&alice.token),
            multipart::Form::new().part("photo", part),
        )
        .await;
    assert_error(res, 413, "payload_too_large", "streamed").await;
    assert_eq!(app.count("photos").await, 0);
}

/// Like and unlike are idempotent and return the exact count.
#[tokio::test]
async fn like_and_unlike() {
    let app = spawn_app().await;
    let alice = app.make_user("alice").await;
    let photo = app.posted_photo(&alice, "").await;
    let path = format!("/api/photos/{}/like", photo["id"]);
    for (method, expected) in [
        (Method::POST, json!({"liked": true, "likeCount": 1})),
        (Method::POST, json!({"liked": true, "likeCount": 1})),
        (Method::DELETE, json!({"liked": false, "likeCount": 0})),
        (Method::DELETE, json!({"liked": false, "likeCount": 0})),
    ] {
        let res = app.send(method.clone(), &path, Some(&alice.token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap(), expected, "{method}");
    }
    app.send(Method::POST, &path, Some(&alice.token)).await;
    let got: Value = app
        .get(&format!("/api/photos/{}", photo["id"]), Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (got["likeCount"].as_i64(), got["likedByMe"].as_bool()),
        (Some(1), Some(true))
    );
    assert_error(
        app.send(Method::POST, "/api/photos/424242/like", Some(&alice.token))
            .await,
        404,
        "not_found",
        "missing",
    )
    .await;
    assert_error(
        app.send(Method::POST, &path, None).await,
        401,
        "unauthorized",
        "anonymous",
    )
    .await;
}

/// The feed holds followed users' photos and your own, newest first, and
/// pages through them with `next` without repeats or gaps.
#[tokio::test]
async fn feed_explore_and_pagination() {
    let app = spawn_app().await;
    let me = app.make_user("me_user").await;
    let friend = app.make_user("friend").await;
    let stranger = app.make_user("stranger").await;
    app.send(
        Method::POST,
        &format!("/api/users/{}/follow", friend.id),
        Some(&me.token),
    )
    .await;
    let mut expected = Vec::new();
    for i in 0..5 {
        expected.push(
            app.posted_photo(&friend, &format!("f{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
        app.posted_photo(&stranger, "s").await;
        expected.push(
            app.posted_photo(&me, &format!("m{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    expected.reverse();

    let mut seen = Vec::new();
    let mut path = "/api/feed?limit=3".to_owned();
    loop {
        let res = app.get(&path, Some(&me.token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let page: Value = res.json().await.unwrap();
        let photos = page["photos"].as_array().unwrap();
        assert!(photos.len() <= 3);
        seen.extend(photos.iter().map(|p| p["id"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/feed?limit=3&before={next}"),
            None => break,
        }
    }
    assert_eq!(
        seen, expected,
        "own and followed photos, newest first, each once"
    );

    let explore: Value = app
        .get("/api/explore?limit=100", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(explore["photos"].as_array().unwrap().len(), 15);
    assert!(explore["next"].is_null());
    let mine: Value = app
        .get(&format!("/api/users/{}/photos?limit=2", me.id), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["photos"].as_array().unwrap().len(), 2);
    assert_eq!(mine["photos"][0]["id"], expected[0]);
    assert!(mine["next"].is_string());
    assert_error(
        app.get("/api/users/424242/photos", None).await,
        404,
        "not_found",
        "missing owner",
    )
    .await;

    for (case, query, code) in [
        ("limit 0", "limit=0", "invalid_limit"),
        ("limit -1", "limit=-1", "invalid_limit"),
        ("limit huge", "limit=1000000", "invalid_limit"),
        ("limit text", "limit=ten", "invalid_limit"),
        ("cursor text", "before=abc", "invalid_cursor"),
        ("cursor negative", "before=-5", "invalid_cursor"),
        (
            "cursor overflow",
            "before=99999999999999999999",
            "invalid_cursor",
        ),
    ] {
        assert_error(
            app.get(&format!("/api/feed?{query}"), Some(&me.token))
                .await,
            422,
            code,
            case,
        )
        .await;
        assert_error(
            app.get(&format!("/api/explore?{query}"), None).await,
            422,
            code,
            case,
        )
        .await;
        assert_error(
            app.get(&format!("/api/users/{}/photos?{query}", me.id), None)
                .await,
            422,
            code,
            case,
        )
        .await;
    }
    assert_error(
        app.get("/api/feed", None).await,
        401,
        "unauthorized",
        "anonymous feed",
    )
    .await;
}

/// Health, readiness, unknown paths and wrong methods.
#[tokio::test]
async fn ops_routes_and_unknown_paths() {
    let app = spawn_app().await;
    let health = app.get("/health", None).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        health.headers()["server-timing"]
            .to_str()
            .unwrap()
            .contains("app;dur=")
    );
    assert_eq!(app.get("/ready", None).await.status(), StatusCode::OK);
    assert_error(
        app.get("/api/nope", None).await,
        404,
        "not_found",
        "unknown path",
    )
    .await;
    assert_error(
        app.send(Method::PUT, "/api/feed", None).await,
        405,
        "method_not_allowed",
        "PUT feed",
    )
    .await;
}

/// The OpenAPI document lists every route of the contract.
#[tokio::test]
async fn openapi_covers_the_contract() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/register", &["post"][..]),
        ("/api/login", &["post"]),
        ("/api/logout", &["post"]),
        ("/api/me", &["get"]),
        ("/api/users/{id}", &["get"]),
        ("/api/users/{id}/follow", &["post", "delete"]),
        ("/api/users/{id}/photos", &["get"]),
        ("/api/photos", &["post"]),
        ("/api/photos/{id}", &["get"]),
        ("/api/photos/{id}/like", &["post", "delete"]),
        ("/api/feed", &["get"]),
        ("/api/explore", &["get"]),
        ("/uploads/{name}", &["get"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
        ("/api/openapi.json", &["get"]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} missing"
            );
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "Photo",
        "PhotoPage",
        "UserProfile",
        "ErrorBody",
        "AuthBody",
        "LikeState",
        "FollowState",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    let register = &paths["/api/register"]["post"]["responses"];
    for code in ["201", "400", "409", "422"] {
        assert!(register.get(code).is_some(), "register documents {code}");
    }
}

/// A restart keeps everything (the SQLite file is the state).
#[tokio::test]
async fn data_survives_a_restart() {
    let app = spawn_app().await;
    let alice = app.registered("alice").await;
    app.posted_photo(&alice, "kept").await;
    app.stop().await;
    let store = stage_1::SqliteStore::open(stage_1::SqliteConfig::new(
        app.dir.path().join("minigram.sqlite3"),
    ))
    .unwrap();
    use minigram::Store as _;
    let page = store
        .explore(None, minigram::domain::PageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(page.photos.len(), 1);
    assert_eq!(page.photos[0].caption, "kept");
    let creds = store.credentials_for("alice").await.unwrap().unwrap();
    assert_eq!(creds.user_id.0, alice.id);
}
