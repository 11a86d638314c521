//! The people the load tests simulate (DESIGN.md, "Load tests"), as Goose
//! scenarios with think times. Every response is validated on its status
//! *and* its body; a failed validation is counted as an error.
//!
//! Each Goose iteration is one **visit** by one person, of a kind the mix
//! picks at random (so the proportions hold for any number of users and
//! in both load models):
//!
//! - **returning** (most visits): a person who has been here before, with
//!   a session that lasts (`people.rs`). Reads the feed, scrolls a second
//!   page, likes a photo; one visit in [`FOLLOW_EVERY`] also follows
//!   someone and one in [`UPLOAD_EVERY`] uploads a photo. A visit starts
//!   signed out only with `--signed-out-share` (then it signs in) and ends
//!   with a logout only with `--logout-share`.
//! - **newcomer** (`--newcomer-share` of visits): registers, follows a few
//!   popular accounts, reads the feed, likes, uploads, and stays: the
//!   account joins the people who come back.
//! - **lurker**: explore, a profile and a photo; never signs in.
//! - **celebrity** (the `celebrity` mix only): the celebrity, `user1`,
//!   posts a photo with their lasting session.
//!
//! Mixes: `default` (newcomers at their share, then returning 7 : lurker
//! 3), `sign-in-every-visit` (the lab's first load model: newcomer 1 :
//! returning 6 : lurker 3, and every returning visit signs in and out, so
//! about one request in seven costs a password hash), `writes`
//! (returning people who like, follow and upload on every visit),
//! `reads` (lurkers only), `uploads` (camera-sized photos) and
//! `celebrity` (the default mix, and [`CELEBRITY_POSTS`] of visits are
//! the celebrity posting).

pub mod name;
mod requests;

use goose::prelude::*;

use crate::arrivals;
use crate::people::{self, Visitor};
use rand::Rng;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use requests::*;

/// One returning visit in this many also follows someone.
pub const FOLLOW_EVERY: u32 = 10;
/// One returning visit in this many also uploads a photo.
pub const UPLOAD_EVERY: u32 = 20;
/// The `celebrity` mix: the share of visits that are the celebrity
/// posting (at 100 visits/s, 5 photos a second).
pub const CELEBRITY_POSTS: f64 = 0.05;
/// The account the `celebrity` mix posts as; `seed --celebrity-percent`
/// gives it its followers.
pub const CELEBRITY: &str = "user1";

/// How often the rare things happen (each a probability, 0..=1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    /// Visits that are a newcomer registering.
    pub newcomer: f64,
    /// Returning visits that start signed out (new device, expired session).
    pub signed_out: f64,
    /// Returning visits that end with a logout.
    pub logout: f64,
}

impl Shares {
    /// 1 visit in 100 is a newcomer; 1 returning visit in 50 signs in, and 1
    /// in 50 logs out.
    pub const DEFAULT: Self = Self {
        newcomer: 0.01,
        signed_out: 0.02,
        logout: 0.02,
    };
    /// The smoke run: every request name is exercised within seconds.
    pub const SMOKE: Self = Self {
        newcomer: 0.25,
        signed_out: 0.25,
        logout: 0.25,
    };
}

/// What the journeys need to know about the target.
#[derive(Debug, Clone)]
pub struct JourneyConfig {
    /// Seeded accounts `user1` ... `userN` exist, with the seed password.
    pub seeded_users: usize,
    /// Think time between a person's actions (and, closed model, between
    /// visits).
    pub think: (Duration, Duration),
    /// Which people, in which proportions.
    pub mix: Mix,
    pub shares: Shares,
}

/// The proportions of the journeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Newcomers at `--newcomer-share`, then returning 7 : lurker 3, with
    /// sessions that last (a social app: mostly reads by signed-in people).
    Default,
    /// The old model: newcomer 1 : returning 6 : lurker 3, and every
    /// returning visit signs in and logs out (what if every visit costs a
    /// password hash?).
    SignInEveryVisit,
    /// Newcomers at `--newcomer-share`; everyone else likes, follows and
    /// uploads on every visit (the crash test's write-heavy load).
    Writes,
    /// Lurkers only: anonymous explore, profiles and photos.
    Reads,
    /// Signed-in people who upload camera-sized photos and read their feed
    /// (the queue-impact experiment).
    Uploads,
    /// The default mix, and [`CELEBRITY_POSTS`] of visits are the
    /// celebrity ([`CELEBRITY`], seeded with `--celebrity-percent` of users
    /// as followers) posting a photo (the celebrity experiment).
    Celebrity,
}

/// The kinds of visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Newcomer,
    Returning,
    /// A returning visit of the old model: sign in, read, like, log out.
    SignInVisit,
    Writer,
    Lurker,
    Uploader,
    Celebrity,
}

impl Mix {
    /// The name as `--mix` takes it (clap's), and result files record it.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .expect("every mix has a name")
            .get_name()
            .to_owned()
    }

    /// Whether visits of this mix use the pool of people with sessions.
    pub fn has_people(self) -> bool {
        matches!(
            self,
            Mix::Default | Mix::Writes | Mix::Uploads | Mix::Celebrity
        )
    }

    fn pick(self, shares: &Shares) -> Kind {
        let mut rng = rand::rng();
        let x: f64 = rng.random();
        match self {
            Mix::Celebrity if rng.random_bool(CELEBRITY_POSTS) => Kind::Celebrity,
            Mix::Default | Mix::Celebrity if x < shares.newcomer => Kind::Newcomer,
            Mix::Default | Mix::Celebrity if rng.random_bool(0.7) => Kind::Returning,
            Mix::Default | Mix::Celebrity => Kind::Lurker,
            Mix::SignInEveryVisit if x < 0.1 => Kind::Newcomer,
            Mix::SignInEveryVisit if x < 0.7 => Kind::SignInVisit,
            Mix::SignInEveryVisit => Kind::Lurker,
            Mix::Writes if x < shares.newcomer => Kind::Newcomer,
            Mix::Writes => Kind::Writer,
            Mix::Reads => Kind::Lurker,
            Mix::Uploads => Kind::Uploader,
        }
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

/// One visit in progress: who, with which session, what they have seen.
struct Visit {
    /// The returning person, checked out of the pool for this visit.
    visitor: Option<Visitor>,
    /// The session of this visit (empty: signed out).
    token: String,
    user_id: i64,
    /// Photo ids from the last feed or explore page read.
    seen: Vec<i64>,
    /// Open model: the scheduled start, which the first request is timed
    /// from (taken by it).
    scheduled: Option<Instant>,
    think: (Duration, Duration),
}

impl Visit {
    fn new(scheduled: Option<Instant>, think: (Duration, Duration)) -> Self {
        Self {
            visitor: None,
            token: String::new(),
            user_id: 0,
            seen: Vec::new(),
            scheduled,
            think,
        }
    }

    /// The visit is `visitor`'s, with the session they had.
    fn begin_as(&mut self, visitor: Visitor) {
        self.token = visitor.person.token.clone();
        self.user_id = visitor.person.user_id;
        self.visitor = Some(visitor);
    }

    /// A person's think time before their next action.
    async fn pause(&self) {
        let (min, max) = self.think;
        if max > Duration::ZERO {
            let pause = rand::rng().random_range(min..=max);
            tokio::time::sleep(pause).await;
        }
    }
}

/// Registers the scenario for every host (users are spread over hosts):
/// one transaction, one visit.
pub fn scenarios(
    hosts: &[String],
    cfg: JourneyConfig,
    open: bool,
) -> Result<Vec<Scenario>, GooseError> {
    let (min, max) = cfg.think;
    configure(cfg);
    let mut all = Vec::new();
    for host in hosts {
        // Scenario names must differ per host.
        let tag = if hosts.len() > 1 {
            format!(" @{host}")
        } else {
            String::new()
        };
        let mut s = Scenario::new(&format!("people{tag}")).set_host(host);
        // Closed model: a person thinks between visits too; open model:
        // the schedule says when the next visit starts.
        if !open {
            s = s.set_wait_time(min, max)?;
        }
        all.push(s.register_transaction(transaction!(visit).set_name("visit")));
    }
    Ok(all)
}

/// Marks a Goose user (a slot) that has told the schedule it launched.
#[derive(Debug, Clone)]
struct Launched;

/// One visit: waits for its start (open model), picks its kind, runs it,
/// and checks the person back in whatever happened.
async fn visit(user: &mut GooseUser) -> TransactionResult {
    if user.get_session_data::<Launched>().is_none() {
        user.set_session_data(Launched);
        arrivals::arrive();
    }
    let scheduled = match arrivals::next() {
        arrivals::Next::Now => None,
        arrivals::Next::At(at) => {
            arrivals::wait_for(at).await;
            Some(at)
        }
        arrivals::Next::Idle(idle) => {
            tokio::time::sleep(idle).await;
            return Ok(());
        }
    };
    let _counted = arrivals::InProgress::start();
    let cfg = config();
    let mut v = Visit::new(scheduled, cfg.think);
    let kind = cfg.mix.pick(&cfg.shares);
    let result = match kind {
        Kind::Newcomer => newcomer(user, &mut v).await,
        Kind::Returning => returning(user, &mut v, &cfg.shares).await,
        Kind::SignInVisit => sign_in_visit(user, &mut v).await,
        Kind::Writer => writer(user, &mut v, &cfg.shares).await,
        Kind::Lurker => lurker(user, &mut v).await,
        Kind::Uploader => uploader(user, &mut v, &cfg.shares).await,
        Kind::Celebrity => celebrity(user, &mut v).await,
    };
    if let Some(mut visitor) = v.visitor.take() {
        visitor.person.token = v.token;
        people::check_in(visitor);
    }
    result
}

/// Checks a returning person out of the pool and makes sure they are
/// signed in: only `signed_out` of visits (or a person who logged out last
/// time) sign in.
async fn come_back(user: &mut GooseUser, v: &mut Visit, shares: &Shares) -> TransactionResult {
    let visitor = people::check_out();
    let fresh = rand::rng().random_bool(shares.signed_out);
    match visitor {
        Some(visitor) => {
            let (username, password) = (visitor.person.username.clone(), visitor.person.password);
            v.begin_as(visitor);
            if fresh || v.token.is_empty() {
                login_as(user, v, &username, password).await?;
                v.pause().await;
            }
        }
        // Nobody has visited yet (e.g. --people 0): a person signs in.
        None => {
            let n = rand::rng().random_range(1..=config().seeded_users.max(1));
            login_as(user, v, &format!("user{n}"), minigram::seed::SEED_PASSWORD).await?;
            v.pause().await;
        }
    }
    Ok(())
}

/// Ends a returning visit: `logout` of them log out, unless the person is
/// in another visit (tab) at the same time.
async fn leave(user: &mut GooseUser, v: &mut Visit, shares: &Shares) -> TransactionResult {
    if rand::rng().random_bool(shares.logout) && v.visitor.as_ref().is_none_or(people::may_log_out)
    {
        v.pause().await;
        logout(user, v).await?;
    }
    Ok(())
}

async fn returning(user: &mut GooseUser, v: &mut Visit, shares: &Shares) -> TransactionResult {
    come_back(user, v, shares).await?;
    read_feed(user, v).await?;
    v.pause().await;
    next_feed_page(user, v).await?;
    v.pause().await;
    like_one(user, v).await?;
    if rand::rng().random_ratio(1, FOLLOW_EVERY) {
        v.pause().await;
        follow_popular(user, v, 1).await?;
    }
    if rand::rng().random_ratio(1, UPLOAD_EVERY) {
        v.pause().await;
        send_photo(user, v, Upload::Small).await?;
    }
    leave(user, v, shares).await
}

/// The write-heavy visit: read, like, follow, upload, every time.
async fn writer(user: &mut GooseUser, v: &mut Visit, shares: &Shares) -> TransactionResult {
    come_back(user, v, shares).await?;
    read_feed(user, v).await?;
    v.pause().await;
    like_one(user, v).await?;
    v.pause().await;
    follow_popular(user, v, 1).await?;
    v.pause().await;
    send_photo(user, v, Upload::Small).await?;
    leave(user, v, shares).await
}

/// The uploads mix: a camera-sized photo, then the feed and explore.
async fn uploader(user: &mut GooseUser, v: &mut Visit, shares: &Shares) -> TransactionResult {
    come_back(user, v, shares).await?;
    send_photo(user, v, Upload::Camera).await?;
    v.pause().await;
    read_feed(user, v).await?;
    v.pause().await;
    explore(user, v).await?;
    leave(user, v, shares).await
}

/// The celebrity posts: with their lasting session when the pool has them
/// (a sign-in when they are signed out), a small photo, nothing else.
async fn celebrity(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    if let Some(visitor) = people::check_out_named(CELEBRITY) {
        v.begin_as(visitor);
    }
    if v.token.is_empty() {
        login_as(user, v, CELEBRITY, minigram::seed::SEED_PASSWORD).await?;
    }
    send_photo(user, v, Upload::Small).await
}

/// A new person: registers, follows a few popular accounts, reads, likes,
/// uploads, and joins the people who come back.
async fn newcomer(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    register(user, v).await?;
    v.pause().await;
    follow_popular(user, v, 3).await?;
    v.pause().await;
    read_feed(user, v).await?;
    v.pause().await;
    like_one(user, v).await?;
    v.pause().await;
    send_photo(user, v, Upload::Small).await
}

/// The old model's returning visit: sign in, read, scroll, like, log out.
async fn sign_in_visit(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    let n = rand::rng().random_range(1..=config().seeded_users.max(1));
    login_as(user, v, &format!("user{n}"), minigram::seed::SEED_PASSWORD).await?;
    v.pause().await;
    read_feed(user, v).await?;
    v.pause().await;
    next_feed_page(user, v).await?;
    v.pause().await;
    like_one(user, v).await?;
    v.pause().await;
    logout(user, v).await
}

async fn lurker(user: &mut GooseUser, v: &mut Visit) -> TransactionResult {
    explore(user, v).await?;
    v.pause().await;
    view_profile(user, v).await?;
    v.pause().await;
    view_photo(user, v).await
}

/// One anonymous `GET /api/explore` after another, no think time: to
/// measure what the generator itself costs per request (`calibrate`).
pub fn explore_only(host: &str) -> Result<Scenario, GooseError> {
    configure(JourneyConfig {
        seeded_users: 1,
        think: (Duration::ZERO, Duration::ZERO),
        mix: Mix::Reads,
        shares: Shares::DEFAULT,
    });
    Ok(Scenario::new("explore only")
        .set_host(host)
        .register_transaction(transaction!(explore_plain).set_name("explore")))
}

async fn explore_plain(user: &mut GooseUser) -> TransactionResult {
    // A visit of its own with no think time: one request per iteration.
    explore(
        user,
        &mut Visit::new(None, (Duration::ZERO, Duration::ZERO)),
    )
    .await
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
