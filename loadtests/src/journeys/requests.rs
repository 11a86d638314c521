//! The requests a visit makes, one function each (register, sign in, read
//! the feed, like, upload...), and the checks of every answer: a status
//! that is not the expected one, or a body that does not fit, counts as an
//! error. A 503 or 429 shed by the server is timed apart (`take_shed_micros`).

use goose::prelude::*;

use super::name;
use crate::people::{self};
use crate::{acks, arrivals};
use rand::Rng;
use serde_json::{Value, json};
use std::time::Instant;

use super::*;

/// The body to send, if any.
pub(super) enum Body {
    None,
    Json(Value),
    Photo(Upload),
}

/// Sends one request named `name`, expecting status `expect` and a body
/// that passes `valid`; returns the JSON body. Anything else is recorded as
/// a failure of that request and ends the visit.
#[allow(clippy::too_many_arguments)]
pub(super) async fn call(
    user: &mut GooseUser,
    v: &mut Visit,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Body,
    expect: u16,
    valid: impl Fn(&Value) -> Result<(), &'static str>,
) -> Result<Value, Box<TransactionError>> {
    call_any(user, v, method, path, name, body, &[expect], valid).await
}

/// [`call`] for a request with more than one right answer (an upload is
/// 201 when processed in the request, 202 when queued).
#[allow(clippy::too_many_arguments)]
pub(super) async fn call_any(
    user: &mut GooseUser,
    v: &mut Visit,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Body,
    expect: &[u16],
    valid: impl Fn(&Value) -> Result<(), &'static str>,
) -> Result<Value, Box<TransactionError>> {
    let mut rb = user.get_request_builder(&method, path)?;
    if !v.token.is_empty() {
        rb = rb.bearer_auth(&v.token);
    }
    rb = match body {
        Body::None => rb,
        Body::Json(v) => rb.json(&v),
        Body::Photo(upload) => {
            let (file_name, caption) = upload.form();
            rb.multipart(
                reqwest::multipart::Form::new()
                    .part(
                        "photo",
                        reqwest::multipart::Part::bytes(upload.bytes()).file_name(file_name),
                    )
                    .text("caption", caption),
            )
        }
    };
    let mut request = GooseRequest::builder().set_request_builder(rb).name(name);
    // With one right answer Goose checks it too; with several, the check
    // below decides (Goose counts any 2xx as a success).
    if let [only] = expect {
        request = request.expect_status_code(*only);
    }
    let request = request.build();
    // The open model times a visit's first request from its scheduled
    // start: a start delayed by the generator is latency too.
    let intended = v.scheduled.take().unwrap_or_else(Instant::now);
    let mut goose = user.request(request).await?;
    arrivals::record(name, intended.elapsed());
    let problem = match goose.response {
        Err(e) => format!("{name}: no response: {e}"),
        Ok(response) => {
            let status = response.status().as_u16();
            if status == 503 || status == 429 {
                shed_answer(goose.request.response_time_micros());
            }
            if !expect.contains(&status) {
                format!("{name}: expected {expect:?}, got {status}")
            } else if status == 204 {
                return Ok(Value::Null);
            } else {
                match response.json::<Value>().await {
                    Err(e) => format!("{name}: body is not JSON: {e}"),
                    Ok(v) => match valid(&v) {
                        Ok(()) => return Ok(v),
                        Err(why) => format!("{name}: {why}"),
                    },
                }
            }
        }
    };
    Err(
        match user.set_failure(&problem, &mut goose.request, None, None) {
            Err(e) => e,
            Ok(()) => Box::new(TransactionError::Custom(problem)),
        },
    )
}

pub(super) fn photo_page(v: &Value) -> Result<(), &'static str> {
    let ok = v["photos"].as_array().is_some_and(|ps| {
        ps.iter()
            .all(|p| p["id"].is_i64() && p["url"].is_string() && p["likeCount"].is_i64())
    }) && (v["next"].is_null() || v["next"].is_string());
    if ok {
        Ok(())
    } else {
        Err("not a page of photos")
    }
}

pub(super) fn signed_in(v: &Value) -> Result<(), &'static str> {
    if v["token"].as_str().is_some_and(|t| t.len() == 64) && v["userId"].is_i64() {
        Ok(())
    } else {
        Err("no token or userId")
    }
}

pub(super) fn ids(page: &Value) -> Vec<i64> {
    page["photos"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["id"].as_i64()).collect())
        .unwrap_or_default()
}

pub(super) fn remember(v: &mut Visit, page: &Value) {
    let seen = ids(page);
    if !seen.is_empty() {
        v.seen = seen;
    }
}

/// Takes the session an answer started, and logs it as an acknowledged
/// write (`register` or `login`) with what `verify` needs to sign in again.
pub(super) fn start_session(v: &mut Visit, answer: &Value, write: &str, password: &str) -> String {
    v.token = answer["token"].as_str().unwrap_or_default().to_owned();
    v.user_id = answer["userId"].as_i64().unwrap_or_default();
    let username = answer["username"].as_str().unwrap_or_default().to_owned();
    acks::record(json!({
        "write": write,
        "userId": v.user_id,
        "username": username,
        "password": password,
        "token": v.token,
    }));
    username
}

pub(super) async fn register(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    let name = format!(
        "lt{}_{:x}",
        user.weighted_users_index,
        rand::rng().random::<u32>()
    );
    let body = json!({"username": name, "password": NEWCOMER_PASSWORD});
    let answer = call(
        user,
        v,
        GooseMethod::Post,
        "/api/register",
        name::REGISTER,
        Body::Json(body),
        201,
        signed_in,
    )
    .await?;
    let username = start_session(v, &answer, "register", NEWCOMER_PASSWORD);
    v.visitor = Some(people::join(
        username,
        NEWCOMER_PASSWORD,
        v.user_id,
        v.token.clone(),
    ));
    Ok(())
}

pub(super) async fn login_as(
    user: &mut GooseUser,
    v: &mut Visit,
    username: &str,
    password: &str,
) -> TransactionResult {
    let body = json!({"username": username, "password": password});
    let answer = call(
        user,
        v,
        GooseMethod::Post,
        "/api/login",
        name::LOGIN,
        Body::Json(body),
        200,
        signed_in,
    )
    .await?;
    start_session(v, &answer, "login", password);
    Ok(())
}

pub(super) async fn logout(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    // Sent, not yet acknowledged: if the server dies now, the logout may
    // have committed without an answer (verify then accepts either state).
    acks::record_logout_sent(v.user_id, &v.token);
    call(
        user,
        v,
        GooseMethod::Post,
        "/api/logout",
        name::LOGOUT,
        Body::None,
        204,
        |_| Ok(()),
    )
    .await?;
    acks::record(json!({"write": "logout", "userId": v.user_id, "token": v.token}));
    v.token.clear();
    Ok(())
}

/// Follows `n` "popular" accounts: the first seeded users, whom the seed
/// skews follows towards.
pub(super) async fn follow_popular(
    user: &mut GooseUser,
    v: &mut Visit,
    n: usize,
) -> TransactionResult {
    let me = v.user_id;
    for _ in 0..n {
        let target = rand::rng().random_range(1..=config().seeded_users.clamp(1, 20)) as i64;
        if target == me {
            continue;
        }
        let path = format!("/api/users/{target}/follow");
        call(
            user,
            v,
            GooseMethod::Post,
            &path,
            name::FOLLOW,
            Body::None,
            200,
            |v| {
                if v["following"] == true && v["followers"].as_i64().is_some_and(|n| n >= 1) {
                    Ok(())
                } else {
                    Err("not following after a follow")
                }
            },
        )
        .await?;
        acks::record(json!({"write": "follow", "userId": me, "followee": target}));
    }
    Ok(())
}

pub(super) async fn read_feed(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    let page = call(
        user,
        v,
        GooseMethod::Get,
        "/api/feed?limit=10",
        name::FEED,
        Body::None,
        200,
        photo_page,
    )
    .await?;
    remember(v, &page);
    Ok(())
}

pub(super) async fn next_feed_page(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    let first = call(
        user,
        v,
        GooseMethod::Get,
        "/api/feed?limit=10",
        name::FEED,
        Body::None,
        200,
        photo_page,
    )
    .await?;
    let Some(cursor) = first["next"].as_str().and_then(|c| c.parse::<i64>().ok()) else {
        return Ok(()); // a short feed: nothing to scroll
    };
    let path = format!("/api/feed?limit=10&before={cursor}");
    let page = call(
        user,
        v,
        GooseMethod::Get,
        &path,
        name::FEED_OLDER,
        Body::None,
        200,
        |v| {
            photo_page(v)?;
            if ids(v).iter().all(|id| *id < cursor) {
                Ok(())
            } else {
                Err("page 2 is not older than page 1")
            }
        },
    )
    .await?;
    remember(v, &page);
    Ok(())
}

pub(super) async fn like_one(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    let id = if v.seen.is_empty() {
        1
    } else {
        v.seen[rand::rng().random_range(0..v.seen.len())]
    };
    let path = format!("/api/photos/{id}/like");
    call(
        user,
        v,
        GooseMethod::Post,
        &path,
        name::LIKE,
        Body::None,
        200,
        |v| {
            if v["liked"] == true && v["likeCount"].as_i64().is_some_and(|n| n >= 1) {
                Ok(())
            } else {
                Err("no likeCount after a like")
            }
        },
    )
    .await?;
    acks::record(json!({"write": "like", "userId": v.user_id, "photoId": id}));
    Ok(())
}

/// Uploads a photo: 201 with the processed photo (`width` as expected), or
/// 202 with a `processing` photo when the server queues its processing.
pub(super) async fn send_photo(
    user: &mut GooseUser,
    v: &mut Visit,
    upload: Upload,
) -> TransactionResult {
    let width = upload.stored_width();
    let answer = call_any(
        user,
        v,
        GooseMethod::Post,
        "/api/photos",
        name::UPLOAD,
        Body::Photo(upload),
        &[201, 202],
        move |v| {
            let url_ok = v["id"].is_i64()
                && v["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("/uploads/"));
            let ready = v["status"] == "ready" && v["width"] == width;
            if url_ok && (ready || v["status"] == "processing") {
                Ok(())
            } else {
                Err("not the uploaded photo")
            }
        },
    )
    .await?;
    acks::record(
        json!({"write": "upload", "userId": v.user_id, "photoId": answer["id"], "url": answer["url"]}),
    );
    Ok(())
}

pub(super) async fn explore(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    let page = call(
        user,
        v,
        GooseMethod::Get,
        "/api/explore?limit=20",
        name::EXPLORE,
        Body::None,
        200,
        photo_page,
    )
    .await?;
    remember(v, &page);
    Ok(())
}

pub(super) async fn view_profile(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    let n = rand::rng().random_range(1..=config().seeded_users.max(1)) as i64;
    let path = format!("/api/users/{n}");
    call(
        user,
        v,
        GooseMethod::Get,
        &path,
        name::PROFILE,
        Body::None,
        200,
        move |v| {
            if v["id"] == n && v["followers"].is_i64() {
                Ok(())
            } else {
                Err("not the profile asked for")
            }
        },
    )
    .await?;
    Ok(())
}

pub(super) async fn view_photo(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    let Some(&id) = v.seen.first() else {
        return Ok(());
    };
    let path = format!("/api/photos/{id}");
    call(
        user,
        v,
        GooseMethod::Get,
        &path,
        name::PHOTO,
        Body::None,
        200,
        move |v| {
            if v["id"] == id {
                Ok(())
            } else {
                Err("not the photo asked for")
            }
        },
    )
    .await?;
    Ok(())
}
