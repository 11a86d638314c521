//! The black-box HTTP contract suite (DESIGN.md, "HTTP contract"): each
//! route's success path and failure codes, bad input that must change
//! nothing, exact counts under concurrency, and the HTML pages with their
//! cookie and CSRF rules. Every case is generic over the stage's storage.

use futures_util::future::join_all;
use reqwest::{Method, Response, StatusCode, multipart};
use serde_json::{Value, json};

use super::{Backend, TestApp, assert_error, files_in, photo_form, png, spawn_app, spawn_app_with};

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

/// A valid image is stored re-encoded under a content hash and served with
/// long-lived cache headers.
pub async fn upload_and_serve_a_photo<B: Backend>() {
    let app = spawn_app::<B>().await;
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
pub async fn upload_rejects_bad_files_and_stores_nothing<B: Backend>() {
    let app = spawn_app::<B>().await;
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
    let files = files_in(&app.uploads_dir());
    assert_eq!(files, 0, "no file kept from a rejected upload");
}

/// An upload over the size limit is refused with 413.
pub async fn oversized_upload_is_413<B: Backend>() {
    let app = spawn_app_with::<B>(crate::Settings {
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
pub async fn like_and_unlike<B: Backend>() {
    let app = spawn_app::<B>().await;
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
pub async fn feed_explore_and_pagination<B: Backend>() {
    let app = spawn_app::<B>().await;
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
pub async fn ops_routes_and_unknown_paths<B: Backend>() {
    let app = spawn_app::<B>().await;
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
pub async fn openapi_covers_the_contract<B: Backend>() {
    let app = spawn_app::<B>().await;
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

/// `/metrics` is Prometheus text with route templates (never raw ids);
/// `/api/metrics` summarizes the recent window per route.
pub async fn metrics_endpoints<B: Backend>() {
    let app = spawn_app::<B>().await;
    let user = app.make_user("metered").await;
    for _ in 0..5 {
        app.get(&format!("/api/users/{}", user.id), None).await;
        app.get("/api/users/abc", None).await;
        app.get("/api/feed", Some(&user.token)).await;
    }
    let text = app.get("/metrics", None).await;
    assert_eq!(text.status(), StatusCode::OK);
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = text.text().await.unwrap();
    for needle in [
        "# TYPE http_server_request_duration_seconds histogram",
        "http_route=\"/api/users/{id}\"",
        "http_response_status_code=\"400\"",
        "http_server_active_requests",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
    assert!(
        !text.contains(&format!("/api/users/{}\"", user.id)),
        "raw ids never become labels"
    );
    // The window holds finished seconds: wait for the current one to end.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let m: Value = app
        .get("/api/metrics?history=5", None)
        .await
        .json()
        .await
        .unwrap();
    let routes = m["routes"].as_array().unwrap();
    let route = |r: &str| routes.iter().find(|x| x["route"] == r).cloned();
    let users = route("/api/users/{id}").expect("users route in the window");
    assert_eq!(users["count"], 10);
    assert_eq!(users["clientErrors"], 5);
    assert!(route("/api/feed").is_some());
    assert!(m["rps"].as_f64().unwrap() > 0.0);
    assert!(m["p99Ms"].as_f64().unwrap() >= m["p50Ms"].as_f64().unwrap());
    assert!(m["requestsTotal"].as_u64().unwrap() >= 15);
    assert!(m["processRssBytes"].as_u64().unwrap() > 0);
    assert!(
        !m["figures"].as_array().unwrap().is_empty(),
        "the stage reports saturation figures"
    );
    let page = app.get("/metrics.html", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("/static/metrics.js"));
    assert_eq!(
        app.get("/static/metrics.js", None).await.status(),
        StatusCode::OK
    );
}

// ---- concurrency ----

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

// ---- HTML pages ----

/// The session cookie set by a response, as `name=value`.
fn session_cookie(res: &Response) -> String {
    let set = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("minigram_session="))
        .expect("a session cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Lax"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

async fn page<B: Backend>(
    app: &TestApp<B>,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String) {
    let mut req = app.client.get(app.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    if status.is_success() {
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    (status, res.text().await.unwrap())
}

/// The hidden CSRF field of the first form on a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

fn location(res: &Response) -> &str {
    res.headers()["location"].to_str().unwrap()
}

/// Register, see the feed, upload, like, follow, log out: all with forms.
pub async fn a_person_uses_minigram_with_forms<B: Backend>() {
    let app = spawn_app::<B>().await;
    let (status, html) = page(&app, "/register", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<form method=\"post\" action=\"/register\""));

    let res = app
        .client
        .post(app.url("/register"))
        .header("origin", app.address.clone())
        .form(&[
            ("username", "carol"),
            ("password", "password123"),
            ("email", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(&res);

    let (status, html) = page(&app, "/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("@carol"), "the nav shows who is signed in");
    let csrf = csrf_of(&html);

    // Upload through the page form.
    let form = multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("caption", "<script>alert(1)</script>")
        .part(
            "photo",
            multipart::Part::bytes(png(30, 20)).file_name("p.png"),
        );
    let res = app
        .client
        .post(app.url("/upload"))
        .header("cookie", &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let (_, html) = page(&app, "/", Some(&cookie)).await;
    assert!(html.contains("alert(1)"), "the caption is shown");
    assert!(!html.contains("<script>"), "captions are escaped");
    let photo_id: i64 = {
        let at = html.find("id=\"photo-").unwrap() + 10;
        html[at..].split('"').next().unwrap().parse().unwrap()
    };

    // Like through the form, then the page shows it.
    let res = app
        .client
        .post(app.url(&format!("/photos/{photo_id}/like")))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("action", "like"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/");
    let (_, html) = page(&app, "/", Some(&cookie)).await;
    assert!(html.contains("data-likes=\"1\""));
    assert!(html.contains("value=\"unlike\""));

    // Follow someone from their profile.
    let dave = app.make_user("dave").await;
    let (status, html) = page(&app, &format!("/users/{}", dave.id), Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("value=\"follow\""));
    let res = app
        .client
        .post(app.url(&format!("/users/{}/follow", dave.id)))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "follow"),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/", "redirects never leave the site");
    let (_, html) = page(&app, &format!("/users/{}", dave.id), Some(&cookie)).await;
    assert!(html.contains("<b>1</b> followers"));

    // Log out: the cookie is cleared and the token revoked.
    let res = app
        .client
        .post(app.url("/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (status, _) = page(&app, "/upload", Some(&cookie)).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the old cookie no longer signs in"
    );
}

/// Forms posted without the CSRF value, or from another site, change nothing.
pub async fn cross_site_posts_are_refused<B: Backend>() {
    let app = spawn_app::<B>().await;
    let res = app
        .client
        .post(app.url("/login"))
        .header("origin", "http://evil.example")
        .form(&[("username", "x"), ("password", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let res = app
        .client
        .post(app.url("/register"))
        .header("origin", "http://evil.example")
        .form(&[("username", "mallory"), ("password", "password123")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("users").await, 0);

    let victim = app.make_user("victim").await;
    let photo = app.posted_photo(&victim, "").await;
    let cookie = format!("minigram_session={}", victim.token);
    for csrf in [
        "",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let res = app
            .client
            .post(app.url(&format!("/photos/{}/like", photo["id"])))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf), ("action", "like")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(app.count("likes").await, 0);
}

/// A wrong password on the login page shows an error, not a crash.
pub async fn login_page_shows_errors<B: Backend>() {
    let app = spawn_app::<B>().await;
    app.registered("erin").await;
    let res = app
        .client
        .post(app.url("/login"))
        .form(&[("username", "erin"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let html = res.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("wrong username or password"));
    let res = app
        .client
        .post(app.url("/login"))
        .form(&[("username", "erin"), ("password", "password123")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    session_cookie(&res);
}

/// Anonymous visitors can browse explore and profiles, and are sent to
/// log in for the feed and the upload form.
pub async fn anonymous_browsing<B: Backend>() {
    let app = spawn_app::<B>().await;
    let frank = app.make_user("frank").await;
    app.posted_photo(&frank, "public").await;
    let (status, html) = page(&app, "/explore", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("public") && html.contains("/uploads/"));
    let (status, html) = page(&app, &format!("/users/{}", frank.id), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("@frank") && !html.contains("value=\"follow\""));
    let (status, _) = page(&app, "/users/999999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(location(&res), "/explore");
    let res = app.client.get(app.url("/upload")).send().await.unwrap();
    assert_eq!(location(&res), "/login");
    let css = app
        .client
        .get(app.url("/static/minigram.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

/// Generates one `#[tokio::test]` per HTTP case for a backend (used by
/// `contract_tests!`).
#[macro_export]
macro_rules! http_contract_tests {
    ($backend:ty) => {
        $crate::__contract_cases!($backend; http;
            register_then_use_the_token,
            register_rejects_bad_input_and_changes_nothing,
            login_and_its_failures,
            logout_revokes_the_token,
            bad_tokens_are_refused,
            user_profiles_and_bad_ids,
            follow_and_unfollow,
            upload_and_serve_a_photo,
            upload_rejects_bad_files_and_stores_nothing,
            oversized_upload_is_413,
            like_and_unlike,
            feed_explore_and_pagination,
            ops_routes_and_unknown_paths,
            openapi_covers_the_contract,
            metrics_endpoints,
            fifty_users_like_one_photo_at_once,
            one_user_likes_twenty_times_at_once,
            concurrent_registrations_of_one_name,
            thirty_users_follow_one_at_once,
            same_picture_uploaded_at_once,
            a_person_uses_minigram_with_forms,
            cross_site_posts_are_refused,
            login_page_shows_errors,
            anonymous_browsing
        );
    };
}
