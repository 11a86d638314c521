//! The people the load tests simulate (DESIGN.md, "Load tests"), as Goose
//! scenarios with think times. Every response is validated on its status
//! *and* its body; a failed validation is counted as an error.
//!
//! - **newcomer** (weight 1): registers, follows a few popular accounts,
//!   reads the feed, likes a photo from it, uploads a real image (each
//!   iteration is a new person).
//! - **returning** (weight 6): logs in to a seeded account, scrolls two feed
//!   pages, likes a photo, logs out (each iteration is one visit).
//! - **lurker** (weight 3): browses explore, a profile and a photo; never
//!   signs in.

use goose::prelude::*;

use crate::acks;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

/// What the journeys need to know about the target.
#[derive(Debug, Clone)]
pub struct JourneyConfig {
    /// Seeded accounts `user1` ... `userN` exist, with the seed password.
    pub seeded_users: usize,
    /// Think time between a user's actions.
    pub think: (Duration, Duration),
    /// Which people, in which proportions.
    pub mix: Mix,
}

/// The proportions of the journeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// newcomer 1 : returning 6 : lurker 3 (a social app: mostly reads).
    Default,
    /// newcomer 3 : returning 2, no lurkers: registrations, follows, likes,
    /// uploads, sign-ins (the crash test's write-heavy load).
    Writes,
    /// Lurkers only: anonymous explore, profiles and photos.
    Reads,
    /// Signed-in people who upload camera-sized photos and read their feed
    /// (the queue-impact experiment).
    Uploads,
}

impl Mix {
    /// The name as `--mix` takes it (clap's), and result files record it.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .expect("every mix has a name")
            .get_name()
            .to_owned()
    }
}

/// The configuration of the current run. Goose transactions are plain
/// functions, so they read it from here; each run (a lab runs several, on
/// datasets of different sizes) replaces it before its users start.
static CONFIG: RwLock<Option<JourneyConfig>> = RwLock::new(None);

/// The password of every account a newcomer registers.
const NEWCOMER_PASSWORD: &str = "load-test-password";

fn config() -> JourneyConfig {
    CONFIG
        .read()
        .expect("journey config poisoned")
        .clone()
        .expect("journeys configured")
}

fn configure(cfg: JourneyConfig) {
    *CONFIG.write().expect("journey config poisoned") = Some(cfg);
}

/// A picture a journey uploads, encoded once per run.
#[derive(Debug, Clone, Copy)]
enum Upload {
    /// A small 96 × 72 PNG (the newcomers').
    Small,
    /// A camera-sized 2400 × 1800 JPEG (the uploads mix): decoding,
    /// downscaling and re-encoding it is real work.
    Camera,
}

static SMALL_PHOTO: OnceLock<Vec<u8>> = OnceLock::new();
static CAMERA_PHOTO: OnceLock<Vec<u8>> = OnceLock::new();

impl Upload {
    fn bytes(self) -> Vec<u8> {
        let (cell, seed, w, h, format) = match self {
            Upload::Small => (&SMALL_PHOTO, 11, 96, 72, image::ImageFormat::Png),
            Upload::Camera => (&CAMERA_PHOTO, 23, 2400, 1800, image::ImageFormat::Jpeg),
        };
        cell.get_or_init(|| {
            let mut out = Vec::new();
            minigram::images::generated(seed, w, h)
                .write_to(&mut std::io::Cursor::new(&mut out), format)
                .expect("encode the upload image");
            out
        })
        .clone()
    }

    /// (file name, caption) of the multipart form.
    fn form(self) -> (&'static str, &'static str) {
        match self {
            Upload::Small => ("lt.png", "load test"),
            Upload::Camera => ("camera.jpg", "load test, a camera-sized photo"),
        }
    }

    /// The width the server gives it (long side at most `MAX_EDGE`).
    fn stored_width(self) -> u32 {
        match self {
            Upload::Small => 96,
            Upload::Camera => minigram::images::MAX_EDGE,
        }
    }
}

/// A signed-in simulated user.
#[derive(Debug, Clone)]
struct Session {
    token: String,
    user_id: i64,
    username: String,
    /// Photo ids from the last feed or explore page read.
    seen: Vec<i64>,
}

/// Registers the scenarios for every host (users are spread over hosts).
pub fn scenarios(hosts: &[String], cfg: JourneyConfig) -> Result<Vec<Scenario>, GooseError> {
    let (min, max) = cfg.think;
    let mix = cfg.mix;
    configure(cfg);
    let (newcomers, returning) = match mix {
        Mix::Default => (1, 6),
        Mix::Writes => (3, 2),
        Mix::Reads | Mix::Uploads => (0, 0),
    };
    let mut all = Vec::new();
    for host in hosts {
        // Scenario names must differ per host.
        let tag = if hosts.len() > 1 {
            format!(" @{host}")
        } else {
            String::new()
        };
        if mix == Mix::Reads {
            all.push(lurker(&tag, host, min, max)?);
            continue;
        }
        if mix == Mix::Uploads {
            all.push(
                Scenario::new(&format!("uploader{tag}"))
                    .set_host(host)
                    .set_wait_time(min, max)?
                    // Signs in once; every iteration uploads and reads.
                    .register_transaction(transaction!(login).set_name("login").set_on_start())
                    .register_transaction(transaction!(upload_big).set_name("upload"))
                    .register_transaction(transaction!(read_feed).set_name("read feed"))
                    .register_transaction(transaction!(explore).set_name("explore")),
            );
            continue;
        }
        all.push(
            Scenario::new(&format!("newcomer{tag}"))
                .set_weight(newcomers)?
                .set_host(host)
                .set_wait_time(min, max)?
                // Every iteration is a new person arriving: registration is
                // part of the steady load, not only of the ramp-up.
                .register_transaction(transaction!(register).set_name("register"))
                .register_transaction(transaction!(follow_popular).set_name("follow popular"))
                .register_transaction(transaction!(read_feed).set_name("read feed"))
                .register_transaction(transaction!(like_one).set_name("like"))
                .register_transaction(transaction!(upload).set_name("upload")),
        );
        all.push(
            Scenario::new(&format!("returning{tag}"))
                .set_weight(returning)?
                .set_host(host)
                .set_wait_time(min, max)?
                // Every iteration is one visit: log in, read, like, log out.
                .register_transaction(transaction!(login).set_name("login"))
                .register_transaction(transaction!(read_feed).set_name("read feed"))
                .register_transaction(transaction!(next_feed_page).set_name("scroll"))
                .register_transaction(transaction!(like_one).set_name("like"))
                .register_transaction(transaction!(logout).set_name("logout")),
        );
        if mix == Mix::Writes {
            continue;
        }
        all.push(lurker(&tag, host, min, max)?);
    }
    Ok(all)
}

fn lurker(tag: &str, host: &str, min: Duration, max: Duration) -> Result<Scenario, GooseError> {
    Ok(Scenario::new(&format!("lurker{tag}"))
        .set_weight(3)?
        .set_host(host)
        .set_wait_time(min, max)?
        .register_transaction(transaction!(explore).set_name("explore"))
        .register_transaction(transaction!(view_profile).set_name("profile"))
        .register_transaction(transaction!(view_photo).set_name("photo")))
}

/// One anonymous `GET /api/explore` after another, no think time: to
/// measure what the generator itself costs per request (`calibrate`).
pub fn explore_only(host: &str) -> Result<Scenario, GooseError> {
    configure(JourneyConfig {
        seeded_users: 1,
        think: (Duration::ZERO, Duration::ZERO),
        mix: Mix::Default,
    });
    Ok(Scenario::new("explore only")
        .set_host(host)
        .register_transaction(transaction!(explore_plain).set_name("explore")))
}

async fn explore_plain(user: &mut GooseUser) -> TransactionResult {
    call(
        user,
        GooseMethod::Get,
        "/api/explore?limit=20",
        "GET /api/explore",
        Body::None,
        200,
        photo_page,
    )
    .await?;
    Ok(())
}

/// How long each shed answer (503/429) took, as the client saw it (µs,
/// time to first byte): the server's own timer starts only once a worker
/// picks the request up, so queueing before that shows only here.
static SHED_MICROS: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

fn shed_answer(micros: u64) {
    SHED_MICROS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(micros);
}

/// The shed answers' times since the last call (one step's).
pub fn take_shed_micros() -> Vec<u64> {
    std::mem::take(&mut *SHED_MICROS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The body to send, if any.
enum Body {
    None,
    Json(Value),
    Photo(Upload),
}

/// Sends one request named `name`, expecting status `expect` and a body
/// that passes `valid`; returns the JSON body. Anything else is recorded as
/// a failure of that request and ends the transaction.
async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Body,
    expect: u16,
    valid: impl Fn(&Value) -> Result<(), &'static str>,
) -> Result<Value, Box<TransactionError>> {
    call_any(user, method, path, name, body, &[expect], valid).await
}

/// [`call`] for a request with more than one right answer (an upload is
/// 201 when processed in the request, 202 when queued).
async fn call_any(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Body,
    expect: &[u16],
    valid: impl Fn(&Value) -> Result<(), &'static str>,
) -> Result<Value, Box<TransactionError>> {
    let mut rb = user.get_request_builder(&method, path)?;
    if let Some(s) = user.get_session_data::<Session>()
        && !s.token.is_empty()
    {
        rb = rb.bearer_auth(&s.token);
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
    let mut goose = user.request(request).await?;
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

fn photo_page(v: &Value) -> Result<(), &'static str> {
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

fn signed_in(v: &Value) -> Result<(), &'static str> {
    if v["token"].as_str().is_some_and(|t| t.len() == 64) && v["userId"].is_i64() {
        Ok(())
    } else {
        Err("no token or userId")
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["photos"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["id"].as_i64()).collect())
        .unwrap_or_default()
}

fn remember(user: &mut GooseUser, page: &Value) {
    let seen = ids(page);
    if seen.is_empty() {
        return;
    }
    match user.get_session_data_mut::<Session>() {
        Some(s) => s.seen = seen,
        None => user.set_session_data(Session {
            token: String::new(),
            user_id: 0,
            username: String::new(),
            seen,
        }),
    }
}

/// Remembers who signed in, and logs the new session as an acknowledged
/// write (`register` or `login`) with what `verify` needs to sign in again.
fn start_session(user: &mut GooseUser, v: &Value, write: &str, password: &str) {
    let session = Session {
        token: v["token"].as_str().unwrap_or_default().to_owned(),
        user_id: v["userId"].as_i64().unwrap_or_default(),
        username: v["username"].as_str().unwrap_or_default().to_owned(),
        seen: Vec::new(),
    };
    acks::record(json!({
        "write": write,
        "userId": session.user_id,
        "username": session.username,
        "password": password,
        "token": session.token,
    }));
    user.set_session_data(session);
}

fn me(user: &GooseUser) -> i64 {
    user.get_session_data::<Session>().map_or(0, |s| s.user_id)
}

async fn register(user: &mut GooseUser) -> TransactionResult {
    let name = format!(
        "lt{}_{:x}",
        user.weighted_users_index,
        rand::rng().random::<u32>()
    );
    let body = json!({"username": name, "password": NEWCOMER_PASSWORD});
    let v = call(
        user,
        GooseMethod::Post,
        "/api/register",
        "POST /api/register",
        Body::Json(body),
        201,
        signed_in,
    )
    .await?;
    start_session(user, &v, "register", NEWCOMER_PASSWORD);
    Ok(())
}

async fn login(user: &mut GooseUser) -> TransactionResult {
    let n = rand::rng().random_range(1..=config().seeded_users.max(1));
    let body = json!({"username": format!("user{n}"), "password": minigram::seed::SEED_PASSWORD});
    let v = call(
        user,
        GooseMethod::Post,
        "/api/login",
        "POST /api/login",
        Body::Json(body),
        200,
        signed_in,
    )
    .await?;
    start_session(user, &v, "login", minigram::seed::SEED_PASSWORD);
    Ok(())
}

async fn logout(user: &mut GooseUser) -> TransactionResult {
    call(
        user,
        GooseMethod::Post,
        "/api/logout",
        "POST /api/logout",
        Body::None,
        204,
        |_| Ok(()),
    )
    .await?;
    if let Some(s) = user.get_session_data_mut::<Session>() {
        acks::record(json!({"write": "logout", "userId": s.user_id, "token": s.token}));
        s.token.clear();
    }
    Ok(())
}

async fn follow_popular(user: &mut GooseUser) -> TransactionResult {
    let me = me(user);
    for _ in 0..3 {
        // "Popular" accounts: the first seeded users, whom the seed skews
        // follows towards.
        let target = rand::rng().random_range(1..=config().seeded_users.clamp(1, 20)) as i64;
        if target == me {
            continue;
        }
        let path = format!("/api/users/{target}/follow");
        call(
            user,
            GooseMethod::Post,
            &path,
            "POST /api/users/{id}/follow",
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

async fn read_feed(user: &mut GooseUser) -> TransactionResult {
    let v = call(
        user,
        GooseMethod::Get,
        "/api/feed?limit=10",
        "GET /api/feed",
        Body::None,
        200,
        photo_page,
    )
    .await?;
    remember(user, &v);
    Ok(())
}

async fn next_feed_page(user: &mut GooseUser) -> TransactionResult {
    let first = call(
        user,
        GooseMethod::Get,
        "/api/feed?limit=10",
        "GET /api/feed",
        Body::None,
        200,
        photo_page,
    )
    .await?;
    let Some(cursor) = first["next"].as_str().and_then(|c| c.parse::<i64>().ok()) else {
        return Ok(()); // a short feed: nothing to scroll
    };
    let path = format!("/api/feed?limit=10&before={cursor}");
    let v = call(
        user,
        GooseMethod::Get,
        &path,
        "GET /api/feed?before",
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
    remember(user, &v);
    Ok(())
}

async fn like_one(user: &mut GooseUser) -> TransactionResult {
    let seen = user
        .get_session_data::<Session>()
        .map(|s| s.seen.clone())
        .unwrap_or_default();
    let id = if seen.is_empty() {
        1
    } else {
        seen[rand::rng().random_range(0..seen.len())]
    };
    let path = format!("/api/photos/{id}/like");
    call(
        user,
        GooseMethod::Post,
        &path,
        "POST /api/photos/{id}/like",
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
    acks::record(json!({"write": "like", "userId": me(user), "photoId": id}));
    Ok(())
}

async fn upload(user: &mut GooseUser) -> TransactionResult {
    send_photo(user, Upload::Small).await
}

/// The uploads mix's upload: a camera-sized photo, downscaled by the
/// server to 1080 px on its long side.
async fn upload_big(user: &mut GooseUser) -> TransactionResult {
    send_photo(user, Upload::Camera).await
}

/// Uploads a photo: 201 with the processed photo (`width` as expected), or
/// 202 with a `processing` photo when the server queues its processing.
async fn send_photo(user: &mut GooseUser, upload: Upload) -> TransactionResult {
    let width = upload.stored_width();
    let v = call_any(
        user,
        GooseMethod::Post,
        "/api/photos",
        "POST /api/photos",
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
        json!({"write": "upload", "userId": me(user), "photoId": v["id"], "url": v["url"]}),
    );
    Ok(())
}

async fn explore(user: &mut GooseUser) -> TransactionResult {
    let v = call(
        user,
        GooseMethod::Get,
        "/api/explore?limit=20",
        "GET /api/explore",
        Body::None,
        200,
        photo_page,
    )
    .await?;
    remember(user, &v);
    Ok(())
}

async fn view_profile(user: &mut GooseUser) -> TransactionResult {
    let n = rand::rng().random_range(1..=config().seeded_users.max(1)) as i64;
    let path = format!("/api/users/{n}");
    call(
        user,
        GooseMethod::Get,
        &path,
        "GET /api/users/{id}",
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

async fn view_photo(user: &mut GooseUser) -> TransactionResult {
    let seen = user
        .get_session_data::<Session>()
        .map(|s| s.seen.clone())
        .unwrap_or_default();
    let Some(&id) = seen.first() else {
        return Ok(());
    };
    let path = format!("/api/photos/{id}");
    call(
        user,
        GooseMethod::Get,
        &path,
        "GET /api/photos/{id}",
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
