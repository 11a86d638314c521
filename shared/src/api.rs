//! The JSON API: route table and handlers (DESIGN.md, "HTTP contract").
//!
//! Each handler: its extractors parse the request into domain types
//! ([`crate::extract`]: the caller's session, the page, path ids), it calls
//! one use case of [`App`], and shapes the answer.

use actix_multipart::Multipart;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{App, SignedIn, UploadParts};
use crate::error::ApiError;
use crate::extract::{BearerToken, ClientAddr, MaybeSession, Page, PageParams, PathId, Session};
use crate::images;
use crate::openapi::ApiDoc;
use crate::store::{FollowState, LikeState, MyProfile, Photo, PhotoPage, Store, UserProfile};

type Data<S> = web::Data<App<S>>;

/// Registers every API route (the operator routes are [`crate::ops`]'s).
/// Each resource answers 405 (JSON) for other methods; unknown paths get
/// the app-wide JSON 404.
pub fn configure<S: Store>(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/register").route(web::post().to(register::<S>)))
        .service(resource("/api/login").route(web::post().to(login::<S>)))
        .service(resource("/api/logout").route(web::post().to(logout::<S>)))
        .service(resource("/api/me").route(web::get().to(me::<S>)))
        .service(resource("/api/users/{id}").route(web::get().to(get_user::<S>)))
        .service(
            resource("/api/users/{id}/follow")
                .route(web::post().to(follow::<S>))
                .route(web::delete().to(unfollow::<S>)),
        )
        .service(resource("/api/users/{id}/photos").route(web::get().to(user_photos::<S>)))
        .service(resource("/api/photos").route(web::post().to(upload::<S>)))
        .service(resource("/api/photos/{id}").route(web::get().to(get_photo::<S>)))
        .service(
            resource("/api/photos/{id}/like")
                .route(web::post().to(like::<S>))
                .route(web::delete().to(unlike::<S>)),
        )
        .service(resource("/api/feed").route(web::get().to(feed::<S>)))
        .service(resource("/api/explore").route(web::get().to(explore::<S>)))
        .service(resource("/uploads/{name}").route(web::get().to(uploaded_image::<S>)))
        .service(resource("/api/openapi.json").route(web::get().to(openapi)));
}

pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> HttpResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method",
    )
    .into()
}

/// The app-wide fallback for unknown paths.
pub async fn not_found() -> HttpResponse {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such path").into()
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterForm {
    /// 3–30 characters: letters, digits, `_` and `.`.
    pub username: String,
    /// 8–128 characters.
    pub password: String,
    pub email: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthBody {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub user_id: i64,
    pub username: String,
}

impl From<SignedIn> for AuthBody {
    fn from(s: SignedIn) -> Self {
        Self {
            token: s.token,
            user_id: s.user.user_id.0,
            username: s.user.username.to_string(),
        }
    }
}

#[utoipa::path(post, path = "/api/register", tag = "auth", request_body = RegisterForm,
    responses(
        (status = 201, description = "Registered and signed in", body = AuthBody),
        (status = 400, description = "`invalid_json`: malformed JSON", body = crate::error::ErrorBody),
        (status = 409, description = "`username_taken`", body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_content_type`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_username`, `invalid_password`, `invalid_email`, `invalid_body`", body = crate::error::ErrorBody),
        (status = 503, description = "`overloaded`: too many password hashes queued", body = crate::error::ErrorBody),
    ))]
pub async fn register<S: Store>(
    app: Data<S>,
    form: web::Json<RegisterForm>,
) -> Result<HttpResponse, ApiError> {
    let signed_in = app
        .register(&form.username, &form.password, form.email.as_deref())
        .await?;
    Ok(HttpResponse::Created().json(AuthBody::from(signed_in)))
}

#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = LoginForm,
    responses(
        (status = 200, description = "Signed in; a new token every time", body = AuthBody),
        (status = 400, description = "`invalid_json`", body = crate::error::ErrorBody),
        (status = 401, description = "`invalid_credentials` (also for an unknown user)", body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_content_type`: send JSON", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_body`", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many failed sign-ins for this username, or from this address; see Retry-After", body = crate::error::ErrorBody),
        (status = 503, description = "`overloaded`: too many password hashes queued", body = crate::error::ErrorBody),
    ))]
pub async fn login<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    form: web::Json<LoginForm>,
) -> Result<HttpResponse, ApiError> {
    let client = ClientAddr::of(&req, app.settings.trust_forwarded_for);
    let signed_in = app.login(&form.username, &form.password, &client).await?;
    Ok(HttpResponse::Ok().json(AuthBody::from(signed_in)))
}

#[utoipa::path(post, path = "/api/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "The token is revoked for every server"),
        (status = 401, description = "`unauthorized`", body = crate::error::ErrorBody),
    ))]
pub async fn logout<S: Store>(app: Data<S>, session: Session) -> Result<HttpResponse, ApiError> {
    app.logout(&session).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in user's profile", body = MyProfile),
        (status = 401, description = "`unauthorized`", body = crate::error::ErrorBody),
    ))]
pub async fn me<S: Store>(
    app: Data<S>,
    session: Session,
) -> Result<web::Json<MyProfile>, ApiError> {
    Ok(web::Json(app.my_profile(&session).await?))
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "Profile with counts", body = UserProfile),
        (status = 400, description = "`invalid_id`", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`: a token was sent but is not valid", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ))]
pub async fn get_user<S: Store>(
    app: Data<S>,
    id: web::Path<PathId>,
    viewer: MaybeSession,
) -> Result<web::Json<UserProfile>, ApiError> {
    Ok(web::Json(app.profile(viewer.viewer(), id.user()).await?))
}

#[utoipa::path(post, path = "/api/users/{id}/follow", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User to follow")),
    responses(
        (status = 200, description = "Following (idempotent)", body = FollowState),
        (status = 400, description = "`invalid_id`", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 422, description = "`cannot_follow_self`", body = crate::error::ErrorBody),
    ))]
pub async fn follow<S: Store>(
    app: Data<S>,
    id: web::Path<PathId>,
    session: Session,
) -> Result<web::Json<FollowState>, ApiError> {
    Ok(web::Json(app.follow(&session, id.user(), true).await?))
}

#[utoipa::path(delete, path = "/api/users/{id}/follow", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User to unfollow")),
    responses(
        (status = 200, description = "Not following (idempotent)", body = FollowState),
        (status = 400, description = "`invalid_id`", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 422, description = "`cannot_follow_self`", body = crate::error::ErrorBody),
    ))]
pub async fn unfollow<S: Store>(
    app: Data<S>,
    id: web::Path<PathId>,
    session: Session,
) -> Result<web::Json<FollowState>, ApiError> {
    Ok(web::Json(app.follow(&session, id.user(), false).await?))
}

#[utoipa::path(get, path = "/api/users/{id}/photos", tag = "photos",
    params(("id" = i64, Path, description = "User id"), PageParams),
    responses(
        (status = 200, description = "The user's photos, newest first", body = PhotoPage),
        (status = 400, description = "`invalid_id`", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`: a token was sent but is not valid", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`", body = crate::error::ErrorBody),
    ))]
pub async fn user_photos<S: Store>(
    app: Data<S>,
    id: web::Path<PathId>,
    page: Page,
    viewer: MaybeSession,
) -> Result<web::Json<PhotoPage>, ApiError> {
    Ok(web::Json(
        app.user_photos(viewer.viewer(), id.user(), page.0).await?,
    ))
}

/// The multipart body of `POST /api/photos`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The image: JPEG, PNG, WebP or GIF, at most the configured size (5 MiB by default).
    #[schema(value_type = String, format = Binary)]
    photo: Vec<u8>,
    /// Optional, at most 2,200 characters.
    caption: Option<String>,
}

#[utoipa::path(post, path = "/api/photos", tag = "photos", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored, re-encoded as JPEG (`status: ready`)", body = Photo),
        (status = 202, description = "Stored raw and queued for the background worker (stage 2 with `--photo-processing queue`): `status: processing` until it is processed, then `ready` (or `failed`); only ready photos appear in feeds", body = Photo),
        (status = 400, description = "`missing_photo`, `invalid_multipart`", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`", body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::error::ErrorBody),
        (status = 415, description = "`not_an_image`, `invalid_image`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_caption`, `image_too_large` (over 8192 px a side)", body = crate::error::ErrorBody),
    ))]
pub async fn upload<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    session: Session,
    body: Multipart,
) -> Result<HttpResponse, ApiError> {
    let parts = read_upload(&req, body, app.settings.max_upload_bytes).await?;
    let photo = app.upload(&session.user, parts).await?;
    // 202: stored and queued; the photo becomes visible when processed.
    Ok(match photo.status {
        crate::store::PhotoStatus::Ready => HttpResponse::Created().json(photo),
        _ => HttpResponse::Accepted().json(photo),
    })
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("uploads are limited to {max} bytes"),
    )
}

/// Reads a multipart upload, enforcing `max_bytes` while streaming (a
/// declared Content-Length over the limit is refused before reading).
pub async fn read_upload(
    req: &HttpRequest,
    mut body: Multipart,
    max_bytes: usize,
) -> Result<UploadParts, ApiError> {
    const TEXT_FIELD_MAX: usize = 16 * 1024;
    const ENVELOPE: usize = 64 * 1024; // boundaries, headers, caption
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_bytes + ENVELOPE) {
        return Err(too_large(max_bytes));
    }
    let bad = |e: actix_multipart::MultipartError| {
        ApiError::bad_request(
            "invalid_multipart",
            format!("send multipart/form-data: {e}"),
        )
    };
    let mut parts = UploadParts::default();
    while let Some(field) = body.next().await {
        let mut field = field.map_err(bad)?;
        let name = field.name().unwrap_or_default().to_owned();
        let limit = if name == "photo" {
            max_bytes
        } else {
            TEXT_FIELD_MAX
        };
        let mut buf = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(bad)?;
            if buf.len() + chunk.len() > limit {
                return Err(if name == "photo" {
                    too_large(max_bytes)
                } else {
                    ApiError::unprocessable(
                        "field_too_large",
                        format!("field `{name}` is too large"),
                    )
                });
            }
            buf.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "photo" => parts.photo = Some(buf),
            "caption" | "csrf" => {
                let text = String::from_utf8(buf).map_err(|_| {
                    ApiError::unprocessable("invalid_caption", "text fields must be UTF-8")
                })?;
                if name == "caption" {
                    parts.caption = Some(text);
                } else {
                    parts.csrf = Some(text);
                }
            }
            _ => {} // unknown fields are read (bounded) and ignored
        }
    }
    Ok(parts)
}

#[utoipa::path(get, path = "/api/photos/{id}", tag = "photos",
    params(("id" = i64, Path, description = "Photo id")),
    responses(
        (status = 200, description = "The photo", body = Photo),
        (status = 400, description = "`invalid_id`", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`: a token was sent but is not valid", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ))]
pub async fn get_photo<S: Store>(
    app: Data<S>,
    id: web::Path<PathId>,
    viewer: MaybeSession,
) -> Result<web::Json<Photo>, ApiError> {
    Ok(web::Json(app.photo(viewer.viewer(), id.photo()).await?))
}

#[utoipa::path(post, path = "/api/photos/{id}/like", tag = "photos", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Photo id")),
    responses(
        (status = 200, description = "Liked (idempotent); the exact count", body = LikeState),
        (status = 400, description = "`invalid_id`", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ))]
pub async fn like<S: Store>(
    app: Data<S>,
    id: web::Path<PathId>,
    session: Session,
) -> Result<web::Json<LikeState>, ApiError> {
    Ok(web::Json(app.like(&session, id.photo(), true).await?))
}

#[utoipa::path(delete, path = "/api/photos/{id}/like", tag = "photos", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Photo id")),
    responses(
        (status = 200, description = "Not liked (idempotent); the exact count", body = LikeState),
        (status = 400, description = "`invalid_id`", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ))]
pub async fn unlike<S: Store>(
    app: Data<S>,
    id: web::Path<PathId>,
    session: Session,
) -> Result<web::Json<LikeState>, ApiError> {
    Ok(web::Json(app.like(&session, id.photo(), false).await?))
}

#[utoipa::path(get, path = "/api/feed", tag = "photos", security(("bearer" = [])), params(PageParams),
    responses(
        (status = 200, description = "Photos of followed users and your own, newest first", body = PhotoPage),
        (status = 401, description = "`unauthorized`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`", body = crate::error::ErrorBody),
    ))]
pub async fn feed<S: Store>(
    app: Data<S>,
    page: Page,
    token: BearerToken,
) -> Result<web::Json<PhotoPage>, ApiError> {
    Ok(web::Json(app.feed_for_token(&token.0, page.0).await?))
}

#[utoipa::path(get, path = "/api/explore", tag = "photos", params(PageParams),
    responses(
        (status = 200, description = "Everyone's photos, newest first", body = PhotoPage),
        (status = 401, description = "`unauthorized`: a token was sent but is not valid", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`", body = crate::error::ErrorBody),
    ))]
pub async fn explore<S: Store>(
    app: Data<S>,
    page: Page,
    viewer: MaybeSession,
) -> Result<web::Json<PhotoPage>, ApiError> {
    Ok(web::Json(app.explore(viewer.viewer(), page.0).await?))
}

#[utoipa::path(get, path = "/uploads/{name}", tag = "photos",
    params(("name" = String, Path, description = "`<sha256>.jpg`, as in a photo's `url`")),
    responses(
        (status = 200, description = "JPEG bytes, cacheable for a year", content_type = "image/jpeg"),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ))]
pub async fn uploaded_image<S: Store>(
    app: Data<S>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !images::is_stored_name(&name) {
        return Err(ApiError::not_found("image"));
    }
    let path = app.uploads_dir.join(name.as_str());
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("image"));
        }
        Err(e) => {
            return Err(ApiError::internal(
                &anyhow::Error::new(e).context("reading an upload"),
            ));
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("image/jpeg")
        // Content-addressed: the bytes behind a name never change.
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::ETAG, format!("\"{}\"", &name[..64])))
        .body(bytes))
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "docs",
    responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn openapi() -> HttpResponse {
    use utoipa::OpenApi;
    HttpResponse::Ok().json(ApiDoc::openapi())
}
