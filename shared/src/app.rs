//! The application state shared by every handler, and every use case the
//! JSON API and the HTML pages run (register, login, upload, follow, like,
//! the feed...): a handler parses its request, calls one of these, and
//! shapes the answer. Each use case says which storage outcome becomes
//! which client error.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::auth::{self, Hasher};
use crate::domain::{Caption, Email, PageQuery, Password, PhotoId, UserId, Username};
use crate::error::ApiError;
use crate::extract::{ClientAddr, Session};
use crate::image_pool::{ImagePool, ImagePoolError};
use crate::images::{self, ImageError};
use crate::store::{
    FollowState, LikeState, MyProfile, NewPhoto, NewSession, NewUser, Photo, PhotoPage, PhotoQueue,
    PhotoStatus, SessionUser, Store, StoreError, UserProfile,
};
use crate::timing;

/// Knobs of the app that are the same for both stages.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest accepted upload body, in bytes.
    pub max_upload_bytes: usize,
    /// Set the `Secure` attribute on the session cookie (serve over TLS).
    pub cookie_secure: bool,
    /// Which stage this is (shown by the metrics).
    pub stage: &'static str,
    /// Record request metrics (`/metrics`, `/api/metrics`, the live page).
    /// Off only to measure what measuring costs.
    pub metrics: bool,
    /// Requests in progress at once, and how long each may take.
    pub limits: crate::admission::Limits,
    /// How long a request body may take to arrive, and how much of them
    /// the process holds at once.
    pub bodies: crate::body::BodyLimits,
    /// Failed sign-ins per account and per address before a lock.
    pub login_throttle: crate::auth::Throttle,
    /// How often expired sessions are purged from storage.
    pub session_purge_every: std::time::Duration,
    /// Take the client's address from `X-Forwarded-For` (behind a proxy
    /// that sets it, as nginx in docker compose does); off, anyone could
    /// claim any address.
    pub trust_forwarded_for: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 5 * 1024 * 1024,
            cookie_secure: false,
            stage: "minigram",
            metrics: true,
            limits: crate::admission::Limits::default(),
            bodies: crate::body::BodyLimits::default(),
            login_throttle: crate::auth::Throttle::default(),
            trust_forwarded_for: false,
            session_purge_every: std::time::Duration::from_secs(60),
        }
    }
}

/// Everything a handler needs. Wrapped in `web::Data` (an `Arc`) once.
pub struct App<S> {
    pub store: S,
    pub hasher: Hasher,
    /// Image decoding and re-encoding: a bounded pool of its own.
    pub images: ImagePool,
    /// Where uploaded images live; served under `/uploads/`.
    pub uploads_dir: PathBuf,
    pub settings: Settings,
}

/// What register and login hand back.
pub struct SignedIn {
    pub token: String,
    pub user: SessionUser,
}

/// The raw parts of an upload form, before validation.
#[derive(Default)]
pub struct UploadParts {
    pub photo: Option<Vec<u8>>,
    pub caption: Option<String>,
    /// The anti-CSRF field of the HTML upload form (ignored by the API).
    pub csrf: Option<String>,
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl<S: Store> App<S> {
    /// Who owns `token`: `None` for a malformed, unknown, expired or revoked one.
    pub async fn session_for(&self, token: &str) -> Result<Option<Session>, ApiError> {
        if !auth::is_token_shaped(token) {
            return Ok(None);
        }
        let user = self.store.session_user(auth::token_hash(token)).await?;
        Ok(user.map(|user| Session {
            user,
            token: token.to_owned(),
        }))
    }

    pub async fn register(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
    ) -> Result<SignedIn, ApiError> {
        let username = Username::parse(username)?;
        let password = Password::parse(password)?;
        let email = email
            .filter(|e| !e.is_empty())
            .map(Email::parse)
            .transpose()?;
        let password_hash = self.hasher.hash(password).await?;
        let user_id = self
            .store
            .create_user(NewUser {
                username: username.clone(),
                email,
                password_hash,
            })
            .await?;
        self.start_session(SessionUser { user_id, username }).await
    }

    /// Same answer and (one Argon2 verify) the same cost whether the user is
    /// unknown or the password is wrong.
    /// Throttled per account and per client address (see
    /// [`auth::Throttle`]): the attempt is reserved before any hashing, and
    /// a locked username or address is answered 429 without a hash, whether
    /// the account exists or not.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &ClientAddr,
    ) -> Result<SignedIn, ApiError> {
        let password = Password::for_login(password)?;
        if self.hasher.is_full() {
            return Err(auth::HashError::Saturated.into());
        }
        let throttle = self.settings.login_throttle;
        let limits = throttle.limits(username, &client.0);
        if throttle.enabled() {
            let reserved = self.store.reserve_sign_in(&limits, throttle.window).await?;
            if let auth::Reservation::Locked {
                limit,
                retry_after_secs,
            } = reserved
            {
                return Err(ApiError {
                    retry_after: Some(retry_after_secs.clamp(1, u32::MAX as u64) as u32),
                    ..ApiError::new(
                        actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                        "too_many_attempts",
                        if limit == 0 {
                            "too many failed sign-ins for this username; wait and retry"
                        } else {
                            "too many failed sign-ins from your address; wait and retry"
                        },
                    )
                });
            }
        }
        let verified = self.verify_sign_in(username, password).await;
        if throttle.enabled() {
            let (user_key, addr_key) = (limits[0].key.as_str(), limits[1].key.as_str());
            // A wrong password keeps its reservation as a failure; a right
            // one clears the username and gives the address its attempt
            // back; an attempt that spent no verdict gives both back.
            let settled = match &verified {
                Ok(Some(_)) => self.store.release_sign_in(&[addr_key], &[user_key]).await,
                Ok(None) => Ok(()),
                Err(_) => self.store.release_sign_in(&[user_key, addr_key], &[]).await,
            };
            if let Err(e) = settled {
                tracing::warn!(error = %e, "a sign-in reservation was not settled");
            }
        }
        match verified? {
            Some(user) => self.start_session(user).await,
            None => Err(ApiError::new(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong username or password",
            )),
        }
    }

    /// The user whose password this is, or `None` (unknown user or wrong
    /// password: one verify either way).
    async fn verify_sign_in(
        &self,
        username: &str,
        password: Password,
    ) -> Result<Option<SessionUser>, ApiError> {
        let credentials = match Username::parse(username) {
            Ok(name) => self.store.credentials_for(name.as_str()).await?,
            Err(_) => None,
        };
        let stored_hash = credentials.as_ref().map(|c| c.password_hash.clone());
        let ok = self.hasher.verify(password, stored_hash).await?;
        Ok(credentials.filter(|_| ok).map(|c| SessionUser {
            user_id: c.user_id,
            username: c.username,
        }))
    }

    async fn start_session(&self, user: SessionUser) -> Result<SignedIn, ApiError> {
        let token = auth::new_token();
        self.store
            .create_session(NewSession {
                token_hash: auth::token_hash(&token),
                user: user.clone(),
                expires_at: now_secs() + auth::SESSION_TTL.as_secs() as i64,
            })
            .await?;
        Ok(SignedIn { token, user })
    }

    pub async fn logout(&self, session: &Session) -> Result<(), ApiError> {
        self.store
            .revoke_session(auth::token_hash(&session.token))
            .await?;
        Ok(())
    }

    /// The signed-in user's own profile.
    pub async fn my_profile(&self, me: &Session) -> Result<MyProfile, ApiError> {
        // A session whose user is gone is as good as none.
        self.store
            .my_profile(me.user.user_id)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }

    /// A user's profile with counts, as `viewer` sees it.
    pub async fn profile(
        &self,
        viewer: Option<UserId>,
        user: UserId,
    ) -> Result<UserProfile, ApiError> {
        self.store
            .user_profile(viewer, user)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))
    }

    /// One user's photos, newest first.
    pub async fn user_photos(
        &self,
        viewer: Option<UserId>,
        owner: UserId,
        page: PageQuery,
    ) -> Result<PhotoPage, ApiError> {
        self.store
            .user_photos(viewer, owner, page)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))
    }

    /// Follows (`on`) or unfollows a user; idempotent.
    pub async fn follow(
        &self,
        follower: &Session,
        followee: UserId,
        on: bool,
    ) -> Result<FollowState, ApiError> {
        if follower.user.user_id == followee {
            return Err(ApiError::unprocessable(
                "cannot_follow_self",
                "you cannot follow yourself",
            ));
        }
        match self
            .store
            .set_follow(follower.user.user_id, followee, on)
            .await
        {
            Err(StoreError::NotFound) => Err(ApiError::not_found("user")),
            other => Ok(other?),
        }
    }

    /// One photo, as `viewer` sees it.
    pub async fn photo(&self, viewer: Option<UserId>, photo: PhotoId) -> Result<Photo, ApiError> {
        self.store
            .photo(viewer, photo)
            .await?
            .ok_or_else(|| ApiError::not_found("photo"))
    }

    /// Likes (`on`) or unlikes a photo; idempotent; the exact count.
    pub async fn like(
        &self,
        user: &Session,
        photo: PhotoId,
        on: bool,
    ) -> Result<LikeState, ApiError> {
        match self.store.set_like(user.user.user_id, photo, on).await {
            Err(StoreError::NotFound) => Err(ApiError::not_found("photo")),
            other => Ok(other?),
        }
    }

    /// Photos of the users the viewer follows and the viewer's own.
    pub async fn feed(&self, viewer: &Session, page: PageQuery) -> Result<PhotoPage, ApiError> {
        Ok(self.store.feed(viewer.user.user_id, page).await?)
    }

    /// The feed of the bearer of `token`, the session resolved with the
    /// page (one round trip for a cached page in stage 2): 401 when it is
    /// not a session.
    pub async fn feed_for_token(
        &self,
        token: &str,
        page: PageQuery,
    ) -> Result<PhotoPage, ApiError> {
        if !auth::is_token_shaped(token) {
            return Err(ApiError::unauthorized());
        }
        self.store
            .session_feed(auth::token_hash(token), page)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }

    /// Everyone's photos, newest first.
    pub async fn explore(
        &self,
        viewer: Option<UserId>,
        page: PageQuery,
    ) -> Result<PhotoPage, ApiError> {
        Ok(self.store.explore(viewer, page).await?)
    }

    /// Validates, re-encodes and stores a photo, then records it.
    pub async fn upload(&self, user: &SessionUser, parts: UploadParts) -> Result<Photo, ApiError> {
        let caption = Caption::parse(parts.caption.as_deref().unwrap_or(""))?;
        let bytes = parts.photo.ok_or_else(|| {
            ApiError::bad_request(
                "missing_photo",
                "send the image in a multipart field named `photo`",
            )
        })?;
        if bytes.is_empty() {
            return Err(image_error(ImageError::NotAnImage));
        }
        // The header alone (a few bytes parsed, no pixels): a file that is
        // not an image or is over the size limits is refused here, without
        // taking a place in the image pool.
        images::probe(&bytes).map_err(image_error)?;
        if let Some(queue) = self.store.photo_queue() {
            return self.upload_queued(queue, user, caption, bytes).await;
        }
        let dir = self.uploads_dir.clone();
        let processed = image_work(&self.images, move || {
            let processed = images::process(&bytes)?;
            images::store_file(&dir, &processed)
                .map_err(|e| anyhow::Error::new(e).context("writing the uploaded image to disk"))?;
            Ok(processed)
        })
        .await?;
        // If the row insert fails, the file stays: names are content
        // hashes, so a concurrent upload of the same bytes (on this or
        // another stage-2 process) may have found this file and be about
        // to commit its own row; removing it would lose that photo's
        // image. An orphan file costs disk, never an acknowledged upload.
        Ok(self
            .store
            .insert_photo(NewPhoto {
                user_id: user.user_id,
                caption,
                file_name: processed.file_name,
                width: processed.width,
                height: processed.height,
                status: PhotoStatus::Ready,
            })
            .await?)
    }

    /// The queued path: a cheap header check, the raw bytes stored durably,
    /// a `processing` row committed, a job queued. The request never
    /// decodes the image; the photo becomes visible when the worker has
    /// processed it (`status` says which).
    async fn upload_queued(
        &self,
        queue: &S::PhotoQueue,
        user: &SessionUser,
        caption: Caption,
        bytes: Vec<u8>,
    ) -> Result<Photo, ApiError> {
        if queue.is_full().await? {
            return Err(ApiError::unavailable(
                "overloaded",
                "the photo queue is full: try again in a moment",
            ));
        }
        let incoming = images::incoming_dir(&self.uploads_dir);
        let final_name = image_work(&self.images, move || {
            let (raw_name, final_name) = images::queued_names(&bytes);
            std::fs::create_dir_all(&incoming)
                .and_then(|_| images::write_durably(&incoming, &raw_name, &bytes))
                .map_err(|e| anyhow::Error::new(e).context("storing a queued upload"))?;
            Ok(final_name)
        })
        .await?;
        let photo = self
            .store
            .insert_photo(NewPhoto {
                user_id: user.user_id,
                caption,
                file_name: final_name,
                width: 0,
                height: 0,
                status: PhotoStatus::Processing,
            })
            .await?;
        if let Err(e) = queue.enqueue(photo.id).await {
            // Committed already: the worker's sweep will find it.
            tracing::warn!(
                "photo {:?} not queued ({e}); the sweep will pick it up",
                photo.id
            );
        }
        Ok(photo)
    }
}

/// Runs an upload's image and file work on the image pool, timed as `img`
/// in Server-Timing; an image the checks refuse is a 4xx, a full pool a
/// fast 503, an I/O failure a 500.
async fn image_work<T: Send + 'static>(
    pool: &ImagePool,
    work: impl FnOnce() -> Result<T, UploadFailure> + Send + 'static,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let done = pool
        .run(work)
        .await
        .map_err(|e| match e {
            ImagePoolError::Saturated => ApiError::unavailable(
                "overloaded",
                "image processing is at its limit; retry shortly",
            ),
            ImagePoolError::Failed => ApiError::internal(&anyhow::Error::new(e)),
        })?
        .map_err(|e| match e {
            UploadFailure::Image(e) => image_error(e),
            UploadFailure::Io(e) => ApiError::internal(&e),
        })?;
    timing::record(timing::Phase::Image, started.elapsed());
    Ok(done)
}

enum UploadFailure {
    Image(ImageError),
    Io(anyhow::Error),
}

impl From<ImageError> for UploadFailure {
    fn from(e: ImageError) -> Self {
        Self::Image(e)
    }
}

impl From<anyhow::Error> for UploadFailure {
    fn from(e: anyhow::Error) -> Self {
        Self::Io(e)
    }
}

pub fn image_error(e: ImageError) -> ApiError {
    let status = match e {
        ImageError::TooLarge => actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        _ => actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
    };
    ApiError::new(status, e.code(), e.to_string())
}
