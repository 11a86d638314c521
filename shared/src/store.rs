//! The seam between the app and a stage's storage: a use-case-shaped trait.
//!
//! Each method is one thing Minigram does ("like this photo", "read this
//! feed page"), not generic CRUD, so each backend can answer it the way its
//! engine is best at (one SQLite transaction, one Postgres round trip, a
//! Redis cache in front). Handlers are generic over `S: Store`; a stage's
//! `main` picks the implementation.
//!
//! Sessions are part of the trait because every request needs them and the
//! stages differ on purpose here: stage 1 keeps them in its SQLite file,
//! stage 2 in Redis so that any process can serve any user.

use crate::domain::{Caption, Email, PageQuery, PhotoId, UserId, Username};
use serde::{Deserialize, Serialize};
use std::future::Future;
use utoipa::ToSchema;

/// Why a storage call failed, in the terms a handler needs to answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique username already exists (case-insensitively).
    #[error("username is taken")]
    UsernameTaken,
    /// The user or photo named by the call does not exist.
    #[error("not found")]
    NotFound,
    /// Storage is there but cannot take more work right now (lock or pool
    /// timeout, server restarting): the client should retry shortly (503).
    #[error("storage is busy or unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Storage refused the call at once because its queue was full (503
    /// `overloaded`): expected under overload, so counted, not logged.
    #[error("storage is at its limit of waiting calls")]
    Overloaded,
    /// The session store (stage 2: Redis) cannot be reached, so nobody's
    /// token can be checked right now (503).
    #[error("the session store is unavailable")]
    SessionsUnavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user to create; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub email: Option<Email>,
    pub password_hash: String,
}

/// What login needs to check a password.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: UserId,
    pub username: Username,
    pub password_hash: String,
}

/// The user a session token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user_id: UserId,
    pub username: Username,
}

/// A session to store: the SHA-256 of the token (the token itself is never
/// stored), its owner (id and name, which the caller already has: a store
/// that keeps sessions apart from users needs no lookup) and when it stops
/// working (unix seconds).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: [u8; 32],
    pub user: SessionUser,
    pub expires_at: i64,
}

/// A user's public profile with counts, as seen by `viewer`.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    #[schema(value_type = i64)]
    pub id: UserId,
    #[schema(value_type = String)]
    pub username: Username,
    /// How many users follow this user.
    pub followers: i64,
    /// How many users this user follows.
    pub following: i64,
    /// How many photos this user posted.
    pub photos: i64,
    /// Whether the viewer follows this user (false when anonymous).
    pub followed_by_me: bool,
}

/// The signed-in user's own profile: the public one plus private fields.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MyProfile {
    #[serde(flatten)]
    pub profile: UserProfile,
    #[schema(value_type = Option<String>)]
    pub email: Option<Email>,
}

/// A photo row to insert. `Ready`: the image file is already stored under
/// `file_name`. `Processing`: the upload is stored raw and a background
/// worker will write `file_name` (stage 2 with `--photo-processing queue`).
#[derive(Debug, Clone)]
pub struct NewPhoto {
    pub user_id: UserId,
    pub caption: Caption,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
    pub status: PhotoStatus,
}

impl NewPhoto {
    /// The photo as the API shows it right after its insert: `id` and
    /// `created_at` as storage assigned them, no likes yet.
    pub fn stored(self, id: PhotoId, username: String, created_at: i64) -> Photo {
        Photo {
            id,
            user_id: self.user_id,
            username,
            caption: self.caption.as_str().to_owned(),
            url: Photo::url_for(&self.file_name),
            width: self.width,
            height: self.height,
            created_at,
            like_count: 0,
            liked_by_me: false,
            status: self.status,
        }
    }
}

/// Where a photo is in its life: feeds, explore and profiles show only
/// `ready` photos; the API answers `processing` ones (to their owner and
/// anyone with the id) so that a client can tell "not yet" from "gone".
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum PhotoStatus {
    /// Processed and visible; `url` serves the image.
    #[default]
    Ready,
    /// Accepted and stored raw; waiting for the background worker.
    /// `width` and `height` are 0 and `url` answers 404 until it is ready.
    Processing,
    /// The worker could not decode the image; it will never be shown.
    Failed,
}

impl PhotoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Processing => "processing",
            Self::Failed => "failed",
        }
    }

    /// The status stored as `s`; `None` for anything else (a row this
    /// code does not understand is an error, not silently `ready`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ready" => Some(Self::Ready),
            "processing" => Some(Self::Processing),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A photo as the API shows it; `url` is derived from the file name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Photo {
    #[schema(value_type = i64)]
    pub id: PhotoId,
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub username: String,
    pub caption: String,
    /// Where the image bytes are served, e.g. `/uploads/<sha256>.jpg`.
    pub url: String,
    pub width: u32,
    pub height: u32,
    /// Unix time in milliseconds.
    pub created_at: i64,
    pub like_count: i64,
    /// Whether the viewer likes this photo (false when anonymous).
    pub liked_by_me: bool,
    /// `ready` unless the photo waits for (or failed) background processing.
    #[serde(default)]
    pub status: PhotoStatus,
}

impl Photo {
    pub fn url_for(file_name: &str) -> String {
        format!("/uploads/{file_name}")
    }
}

/// One page of photos, newest first, and the cursor of the next page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PhotoPage {
    pub photos: Vec<Photo>,
    /// Pass as `before` to get the next page; null on the last page.
    pub next: Option<String>,
}

impl PhotoPage {
    /// Builds a page from up to `limit + 1` rows: the extra row, if present,
    /// only proves that a next page exists.
    pub fn from_rows(mut rows: Vec<Photo>, query: PageQuery) -> Self {
        let limit = query.limit.get() as usize;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(|p| p.id.0.to_string())
        } else {
            None
        };
        Self { photos: rows, next }
    }
}

/// The state after a follow or unfollow.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FollowState {
    /// Whether the viewer now follows the user.
    pub following: bool,
    /// The followed user's follower count.
    pub followers: i64,
}

/// The state after a like or unlike.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LikeState {
    pub liked: bool,
    pub like_count: i64,
}

/// A generated dataset to load in bulk (see `seed`). Rows reference users
/// and photos by their position in these vectors (0-based), and storage
/// assigns ids in that order: user `i` gets id `i + 1` in an empty store.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub users: Vec<SeedUser>,
    pub photos: Vec<SeedPhoto>,
    /// (follower index, followee index), no duplicates, no self-follows.
    pub follows: Vec<(usize, usize)>,
    /// (user index, photo index), no duplicates.
    pub likes: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub struct SeedUser {
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub created_at: i64,
}

/// Seed photos are ordered by `created_at`, oldest first.
#[derive(Debug, Clone)]
pub struct SeedPhoto {
    pub user: usize,
    pub caption: String,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
    pub created_at: i64,
}

/// What an import wrote, for the seed command's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub users: u64,
    pub photos: u64,
    pub follows: u64,
    pub likes: u64,
}

/// What `check` found in storage: row counts, and every inconsistency (a
/// like counter that disagrees with the like rows, a dangling reference, a
/// corrupt page). Empty `problems` means consistent.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Integrity {
    pub users: i64,
    pub photos: i64,
    pub likes: i64,
    pub follows: i64,
    pub problems: Vec<String>,
    /// Distinct image files the photo rows point to (checked on disk by the caller).
    #[serde(skip)]
    pub files: Vec<String>,
}

/// Photos whose stored `like_count` differs from their like rows (the same
/// SQL on SQLite and Postgres): `integrity` reports any as a problem.
pub const LIKE_COUNT_MISMATCHES: &str = "SELECT COUNT(*) FROM photos p
     WHERE p.like_count <> (SELECT COUNT(*) FROM likes l WHERE l.photo_id = p.id)";

/// Everything Minigram asks of its storage. Every method is one use case and
/// one atomic step: counts returned are those committed by the same call.
pub trait Store: Clone + Send + Sync + 'static {
    /// Whether storage answers at all (for `/ready`).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// True when there are no users yet (the demo dataset is loaded then).
    fn is_empty(&self) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Creates a user; `UsernameTaken` if the name exists in any case.
    fn create_user(&self, user: NewUser) -> impl Future<Output = StoreResult<UserId>> + Send;

    /// The password hash of `username` (case-insensitive), if it exists.
    fn credentials_for(
        &self,
        username: &str,
    ) -> impl Future<Output = StoreResult<Option<Credentials>>> + Send;

    /// Stores a session; the user's oldest sessions past
    /// [`crate::auth::MAX_SESSIONS_PER_USER`] end.
    fn create_session(&self, session: NewSession) -> impl Future<Output = StoreResult<()>> + Send;

    /// The owner of an unexpired session, if any.
    fn session_user(
        &self,
        token_hash: [u8; 32],
    ) -> impl Future<Output = StoreResult<Option<SessionUser>>> + Send;

    /// Removes sessions that have expired; how many it removed. Stage 2's
    /// Redis expires them by itself (0).
    fn purge_expired_sessions(&self) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Revokes a session; false if it did not exist.
    fn revoke_session(
        &self,
        token_hash: [u8; 32],
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Reserves one sign-in attempt on every counter in `limits` as one
    /// atomic step, before a password hash is spent (see
    /// [`crate::auth::Throttle`]): if any counter already holds its maximum
    /// in its current window, nothing is counted and the answer is
    /// `Locked`; otherwise each counter goes up by one, a counter's window
    /// (`window` long) starting with its first count.
    fn reserve_sign_in(
        &self,
        limits: &[crate::auth::AttemptLimit],
        window: std::time::Duration,
    ) -> impl Future<Output = StoreResult<crate::auth::Reservation>> + Send;

    /// Settles a granted reservation that was not a failure, in one step:
    /// gives back one attempt on each counter of `release` and forgets
    /// every failure of the counters in `clear` (a successful sign-in
    /// clears its username's).
    fn release_sign_in(
        &self,
        release: &[&str],
        clear: &[&str],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn user_profile(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> impl Future<Output = StoreResult<Option<UserProfile>>> + Send;

    fn my_profile(&self, me: UserId)
    -> impl Future<Output = StoreResult<Option<MyProfile>>> + Send;

    /// Follows (`on`) or unfollows `followee`; idempotent. `NotFound` if the
    /// followee does not exist. Self-follows are rejected before this call.
    fn set_follow(
        &self,
        follower: UserId,
        followee: UserId,
        on: bool,
    ) -> impl Future<Output = StoreResult<FollowState>> + Send;

    fn insert_photo(&self, photo: NewPhoto) -> impl Future<Output = StoreResult<Photo>> + Send;

    fn photo(
        &self,
        viewer: Option<UserId>,
        photo: PhotoId,
    ) -> impl Future<Output = StoreResult<Option<Photo>>> + Send;

    /// Likes (`on`) or unlikes a photo; idempotent; the count is exact.
    fn set_like(
        &self,
        user: UserId,
        photo: PhotoId,
        on: bool,
    ) -> impl Future<Output = StoreResult<LikeState>> + Send;

    /// The feed of the session `token_hash` (`None`: not, or no longer, a
    /// session), the session resolved with the page in one step: one read
    /// of the pool in stage 1, one Redis round trip for a cached page in
    /// stage 2.
    fn session_feed(
        &self,
        token_hash: [u8; 32],
        page: PageQuery,
    ) -> impl Future<Output = StoreResult<Option<PhotoPage>>> + Send;

    /// Photos of the users `viewer` follows and the viewer's own, newest first.
    fn feed(
        &self,
        viewer: UserId,
        page: PageQuery,
    ) -> impl Future<Output = StoreResult<PhotoPage>> + Send;

    /// Everyone's photos, newest first.
    fn explore(
        &self,
        viewer: Option<UserId>,
        page: PageQuery,
    ) -> impl Future<Output = StoreResult<PhotoPage>> + Send;

    /// One user's photos, newest first; `None` if the user does not exist.
    fn user_photos(
        &self,
        viewer: Option<UserId>,
        owner: UserId,
        page: PageQuery,
    ) -> impl Future<Output = StoreResult<Option<PhotoPage>>> + Send;

    /// Checks the stored data for consistency (after a crash, say). Reads
    /// everything: an offline tool, not a request path.
    fn integrity(&self) -> impl Future<Output = StoreResult<Integrity>> + Send;

    /// Loads a generated dataset in bulk (one transaction or COPY).
    fn import(&self, data: Dataset) -> impl Future<Output = StoreResult<ImportSummary>> + Send;

    /// The storage's saturation figures right now (SQLite writer queue,
    /// pool use, cache hits...), for the metrics. Cheap: read every second.
    fn figures(&self) -> Vec<crate::telemetry::Figure> {
        Vec::new()
    }

    /// What processes uploads in the background, if anything does (stage 2
    /// with `--photo-processing queue`); `None`: every upload is processed
    /// in its request.
    type PhotoQueue: PhotoQueue;
    fn photo_queue(&self) -> Option<&Self::PhotoQueue>;
}

/// A queue that hands uploads to background workers: the upload commits a
/// `processing` row and queues its id; a worker makes it `ready`.
pub trait PhotoQueue: Send + Sync + 'static {
    /// Whether the queue is at its bound: the upload is refused with 503
    /// before anything is stored.
    fn is_full(&self) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Hands a `processing` photo to the workers. The row is already
    /// committed, so a failure here loses nothing (the workers also sweep
    /// for photos whose job was lost).
    fn enqueue(&self, photo: PhotoId) -> impl Future<Output = StoreResult<()>> + Send;
}

/// The photo queue of a store that has none: no value of it exists.
#[derive(Debug)]
pub enum NoPhotoQueue {}

impl PhotoQueue for NoPhotoQueue {
    async fn is_full(&self) -> StoreResult<bool> {
        match *self {}
    }

    async fn enqueue(&self, _: PhotoId) -> StoreResult<()> {
        match *self {}
    }
}
