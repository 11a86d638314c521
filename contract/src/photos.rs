//! The HTTP contract, photos: upload and serving, likes, the feed, explore
//! and pagination; bad uploads must store nothing.

use reqwest::{Method, StatusCode, multipart};
use serde_json::{Value, json};

use super::{Backend, assert_error, files_in, photo_form, png, spawn_app, spawn_app_with};

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
    let app = spawn_app_with::<B>(minigram::Settings {
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

/// Generates one `#[tokio::test]` per case of this suite for a backend
/// (used by `contract_tests!`).
#[macro_export]
macro_rules! photos_contract_tests {
    ($backend:ty) => {
        $crate::__contract_cases!($backend; photos;
            upload_and_serve_a_photo,
            upload_rejects_bad_files_and_stores_nothing,
            oversized_upload_is_413,
            like_and_unlike,
            feed_explore_and_pagination
        );
    };
}
