//! HTML pages (askama templates, auto-escaped): feed, explore, profile,
//! upload, login, register. They run the same use cases as the JSON API.
//!
//! The session token rides in an HttpOnly, SameSite=Lax cookie. Every form
//! that changes something while signed in carries a CSRF field derived from
//! the session token; login and register (no session yet) check that the
//! browser's Origin (or Referer) is this site.

use actix_multipart::Multipart;
use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::api;
use crate::app::{App, SignedIn};
use crate::auth;
use crate::domain::{PhotoId, UserId, parse_id};
use crate::error::ApiError;
use crate::extract::{ClientAddr, PageParams, Session};
use crate::store::{Photo, Store, UserProfile};

pub const SESSION_COOKIE: &str = "minigram_session";
const CSP: &str = "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

type Data<S> = web::Data<App<S>>;

pub fn configure<S: Store>(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(feed_page::<S>))
        .route("/explore", web::get().to(explore_page::<S>))
        .route("/users/{id}", web::get().to(profile_page::<S>))
        .route("/upload", web::get().to(upload_page::<S>))
        .route("/upload", web::post().to(upload_submit::<S>))
        .route("/login", web::get().to(login_page::<S>))
        .route("/login", web::post().to(login_submit::<S>))
        .route("/register", web::get().to(register_page::<S>))
        .route("/register", web::post().to(register_submit::<S>))
        .route("/logout", web::post().to(logout_submit::<S>))
        .route("/photos/{id}/like", web::post().to(like_submit::<S>))
        .route("/users/{id}/follow", web::post().to(follow_submit::<S>));
}

/// The pages' stylesheet, mounted with the operator routes (outside
/// admission) so a shedding process still styles its own error pages.
pub fn configure_assets(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/minigram.css", web::get().to(stylesheet));
}

/// The signed-in user as the navigation bar shows it.
pub struct NavUser {
    pub id: i64,
    pub username: String,
}

/// What every page needs: who is signed in, and the CSRF value for forms.
pub struct Nav {
    pub user: Option<NavUser>,
    pub csrf: String,
}

impl Nav {
    fn from(session: Option<&Session>) -> Self {
        match session {
            Some(s) => Self {
                user: Some(NavUser {
                    id: s.user.user_id.0,
                    username: s.user.username.to_string(),
                }),
                csrf: auth::csrf_token(&s.token),
            },
            None => Self {
                user: None,
                csrf: String::new(),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "photos.html")]
struct PhotosPage<'a> {
    nav: Nav,
    title: &'a str,
    empty_hint: &'a str,
    path: &'a str,
    here: String,
    photos: Vec<Photo>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    nav: Nav,
    profile: UserProfile,
    can_follow: bool,
    here: String,
    /// The page without its query (the "older photos" link adds one).
    path: String,
    photos: Vec<Photo>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "upload.html")]
struct UploadPage {
    nav: Nav,
    error: Option<String>,
    max_mib: usize,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    error: Option<String>,
    username: String,
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    nav: Nav,
    error: Option<String>,
    username: String,
    email: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Nav,
    status: u16,
    message: String,
}

fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header((header::REFERRER_POLICY, "same-origin"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Err(e) => ApiError::internal(&anyhow::Error::new(e).context("rendering a page")).into(),
    }
}

fn error_page(session: Option<&Session>, err: ApiError) -> HttpResponse {
    let page = ErrorPage {
        nav: Nav::from(session),
        status: err.status.as_u16(),
        message: err.message.to_string(),
    };
    let mut res = html(err.status, &page);
    if let Some(secs) = err.retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    res
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// A redirect target from a form: only a local path, never `//host` or a URL.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => "/",
    }
}

fn here(req: &HttpRequest) -> String {
    match req.query_string() {
        "" => req.path().to_owned(),
        q => format!("{}?{}", req.path(), q),
    }
}

async fn page_session<S: Store>(
    app: &App<S>,
    req: &HttpRequest,
) -> Result<Option<Session>, ApiError> {
    match req.cookie(SESSION_COOKIE) {
        Some(c) => app.session_for(c.value()).await,
        None => Ok(None),
    }
}

/// Secure when the app is told it is served over TLS (`--cookie-secure`),
/// or when the request came over HTTPS, directly or through a proxy that
/// says so (`X-Forwarded-Proto`/`Forwarded`): trusting that header can only
/// make the cookie stricter.
fn session_cookie<S>(app: &App<S>, req: &HttpRequest, token: &str) -> Cookie<'static> {
    let tls = app.settings.cookie_secure || req.connection_info().scheme() == "https";
    Cookie::build(SESSION_COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(tls)
        .max_age(time::Duration::seconds(auth::SESSION_TTL.as_secs() as i64))
        .finish()
}

/// Does this form post come from our own pages? Browsers send Origin on
/// POST; a request with neither Origin nor Referer is not from a browser
/// page of another site, so it is let through.
fn same_origin(req: &HttpRequest) -> bool {
    let info = req.connection_info();
    let host = info.host();
    let source = req
        .headers()
        .get(header::ORIGIN)
        .or_else(|| req.headers().get(header::REFERER))
        .map(|v| v.to_str().unwrap_or("null"));
    match source {
        None => true,
        Some(url) => url
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next() == Some(host))
            .unwrap_or(false),
    }
}

fn csrf_ok(session: &Session, provided: Option<&str>) -> bool {
    provided == Some(auth::csrf_token(&session.token).as_str())
}

fn forbidden() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "this form is out of date or came from another site; reload the page and try again",
    )
}

async fn feed_page<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    q: web::Query<PageParams>,
) -> HttpResponse {
    let session = match page_session(&app, &req).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other("/explore"),
        Err(e) => return error_page(None, e),
    };
    let page = match q.parse() {
        Ok(p) => p,
        Err(e) => return error_page(Some(&session), e),
    };
    match app.feed(&session, page).await {
        Ok(page) => html(
            StatusCode::OK,
            &PhotosPage {
                nav: Nav::from(Some(&session)),
                title: "Your feed",
                empty_hint: "Nothing here yet: follow people from Explore, or upload a photo.",
                path: "/",
                here: here(&req),
                photos: page.photos,
                next: page.next,
            },
        ),
        Err(e) => error_page(Some(&session), e),
    }
}

async fn explore_page<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    q: web::Query<PageParams>,
) -> HttpResponse {
    let session = match page_session(&app, &req).await {
        Ok(s) => s,
        Err(e) => return error_page(None, e),
    };
    let result = async {
        let page = q.parse()?;
        app.explore(session.as_ref().map(|s| s.user.user_id), page)
            .await
    }
    .await;
    match result {
        Ok(page) => html(
            StatusCode::OK,
            &PhotosPage {
                nav: Nav::from(session.as_ref()),
                title: "Explore",
                empty_hint: "No photos yet.",
                path: "/explore",
                here: here(&req),
                photos: page.photos,
                next: page.next,
            },
        ),
        Err(e) => error_page(session.as_ref(), e),
    }
}

async fn profile_page<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<PageParams>,
) -> HttpResponse {
    let session = match page_session(&app, &req).await {
        Ok(s) => s,
        Err(e) => return error_page(None, e),
    };
    let viewer = session.as_ref().map(|s| s.user.user_id);
    let result = async {
        let user = UserId(parse_id(&id)?);
        let page = q.parse()?;
        let profile = app.profile(viewer, user).await?;
        let photos = app.user_photos(viewer, user, page).await?;
        Ok::<_, ApiError>((profile, photos))
    }
    .await;
    match result {
        Ok((profile, photos)) => html(
            StatusCode::OK,
            &ProfilePage {
                can_follow: viewer.is_some_and(|v| v != profile.id),
                nav: Nav::from(session.as_ref()),
                here: here(&req),
                path: req.path().to_owned(),
                profile,
                photos: photos.photos,
                next: photos.next,
            },
        ),
        Err(e) => error_page(session.as_ref(), e),
    }
}

async fn upload_page<S: Store>(app: Data<S>, req: HttpRequest) -> HttpResponse {
    match page_session(&app, &req).await {
        Ok(Some(s)) => html(
            StatusCode::OK,
            &UploadPage {
                nav: Nav::from(Some(&s)),
                error: None,
                max_mib: app.settings.max_upload_bytes / (1024 * 1024),
            },
        ),
        Ok(None) => see_other("/login"),
        Err(e) => error_page(None, e),
    }
}

async fn upload_submit<S: Store>(app: Data<S>, req: HttpRequest, body: Multipart) -> HttpResponse {
    let session = match page_session(&app, &req).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other("/login"),
        Err(e) => return error_page(None, e),
    };
    let result = async {
        let parts = api::read_upload(&req, body, app.settings.max_upload_bytes).await?;
        if !csrf_ok(&session, parts.csrf.as_deref()) {
            return Err(forbidden());
        }
        app.upload(&session.user, parts).await
    }
    .await;
    match result {
        Ok(_) => see_other(&format!("/users/{}", session.user.user_id.0)),
        Err(e) if e.status.is_client_error() && e.code != "csrf_failed" => html(
            e.status,
            &UploadPage {
                nav: Nav::from(Some(&session)),
                error: Some(e.message.to_string()),
                max_mib: app.settings.max_upload_bytes / (1024 * 1024),
            },
        ),
        Err(e) => error_page(Some(&session), e),
    }
}

#[derive(Deserialize)]
struct CredentialsForm {
    username: String,
    password: String,
    #[serde(default)]
    email: String,
}

async fn login_page<S: Store>(app: Data<S>, req: HttpRequest) -> HttpResponse {
    let session = page_session(&app, &req).await.ok().flatten();
    html(
        StatusCode::OK,
        &LoginPage {
            nav: Nav::from(session.as_ref()),
            error: None,
            username: String::new(),
        },
    )
}

async fn login_submit<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    form: web::Form<CredentialsForm>,
) -> HttpResponse {
    if !same_origin(&req) {
        return error_page(None, forbidden());
    }
    let client = ClientAddr::of(&req, app.settings.trust_forwarded_for);
    match app.login(&form.username, &form.password, &client).await {
        Ok(signed_in) => signed_in_redirect(&app, &req, signed_in),
        Err(e) if e.status.is_client_error() => html(
            e.status,
            &LoginPage {
                nav: Nav::from(None),
                error: Some(e.message.to_string()),
                username: form.username.clone(),
            },
        ),
        Err(e) => error_page(None, e),
    }
}

fn signed_in_redirect<S>(app: &App<S>, req: &HttpRequest, signed_in: SignedIn) -> HttpResponse {
    let mut res = see_other("/");
    // The cookie is valid (ASCII hex); adding it cannot fail.
    let _ = res.add_cookie(&session_cookie(app, req, &signed_in.token));
    res
}

async fn register_page<S: Store>(app: Data<S>, req: HttpRequest) -> HttpResponse {
    let session = page_session(&app, &req).await.ok().flatten();
    html(
        StatusCode::OK,
        &RegisterPage {
            nav: Nav::from(session.as_ref()),
            error: None,
            username: String::new(),
            email: String::new(),
        },
    )
}

async fn register_submit<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    form: web::Form<CredentialsForm>,
) -> HttpResponse {
    if !same_origin(&req) {
        return error_page(None, forbidden());
    }
    let email = Some(form.email.as_str()).filter(|e| !e.is_empty());
    match app.register(&form.username, &form.password, email).await {
        Ok(signed_in) => signed_in_redirect(&app, &req, signed_in),
        Err(e) if e.status.is_client_error() => html(
            e.status,
            &RegisterPage {
                nav: Nav::from(None),
                error: Some(e.message.to_string()),
                username: form.username.clone(),
                email: form.email.clone(),
            },
        ),
        Err(e) => error_page(None, e),
    }
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: Option<String>,
    action: Option<String>,
    next: Option<String>,
}

/// Checks the session and the CSRF field of a signed-in form post.
async fn form_session<S: Store>(
    app: &App<S>,
    req: &HttpRequest,
    csrf: Option<&str>,
) -> Result<Session, HttpResponse> {
    match page_session(app, req).await {
        Ok(Some(s)) if csrf_ok(&s, csrf) => Ok(s),
        Ok(Some(s)) => Err(error_page(Some(&s), forbidden())),
        Ok(None) => Err(see_other("/login")),
        Err(e) => Err(error_page(None, e)),
    }
}

async fn logout_submit<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    let session = match form_session(&app, &req, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    if let Err(e) = app.logout(&session).await {
        return error_page(Some(&session), e);
    }
    let mut res = see_other("/login");
    let mut gone = session_cookie(&app, &req, "");
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    res
}

async fn like_submit<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    form_action(&app, &req, &id, &form, "unlike", async |session, id, on| {
        app.like(session, PhotoId(id), on).await
    })
    .await
}

async fn follow_submit<S: Store>(
    app: Data<S>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    form_action(
        &app,
        &req,
        &id,
        &form,
        "unfollow",
        async |session, id, on| app.follow(session, UserId(id), on).await,
    )
    .await
}

/// A form that switches one thing on or off (like, follow): the session
/// and its CSRF value, the id in the path, the change (off when the form's
/// `action` is `off`), then back to the page it was posted from.
async fn form_action<S: Store, T>(
    app: &App<S>,
    req: &HttpRequest,
    id: &str,
    form: &ActionForm,
    off: &str,
    change: impl AsyncFnOnce(&Session, i64, bool) -> Result<T, ApiError>,
) -> HttpResponse {
    let session = match form_session(app, req, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let result = async {
        let id = parse_id(id)?;
        change(&session, id, form.action.as_deref() != Some(off)).await
    }
    .await;
    match result {
        Ok(_) => see_other(local_path(form.next.as_deref())),
        Err(e) => error_page(Some(&session), e),
    }
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../static/minigram.css"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_local() {
        assert_eq!(local_path(Some("/users/3?before=9")), "/users/3?before=9");
        for bad in ["//evil.example", "https://evil.example/", "evil", "/\\evil"] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }
}
