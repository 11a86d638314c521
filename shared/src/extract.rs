//! What handlers take instead of a raw request: who is calling
//! ([`Session`], [`MaybeSession`], [`ClientAddr`]), the page asked for
//! ([`Page`]) and ids in paths ([`PathId`]), each parsed once, at the
//! boundary, into domain types or a clean 4xx.
//!
//! Extractors run in the order of a handler's parameters, so a handler
//! that lists its path id and page before its session answers a malformed
//! id (400) or page (422) before it looks the token up (401).

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::{LocalBoxFuture, Ready, ready};
use serde::Deserialize;
use std::sync::Arc;

use crate::app::App;
use crate::domain::{PageQuery, PhotoId, UserId, parse_id};
use crate::error::{ApiError, query_error};
use crate::store::{SessionUser, Store};

/// A signed-in user and the token they presented. As an extractor: the
/// bearer token of the request, which must be valid (401 `unauthorized`
/// otherwise).
#[derive(Debug, Clone)]
pub struct Session {
    pub user: SessionUser,
    pub token: String,
}

/// The caller where signing in is optional. A token that is sent must
/// still be valid (401 otherwise), so a client learns that it expired.
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<Session>);

impl MaybeSession {
    /// The viewer's id, if signed in.
    pub fn viewer(&self) -> Option<UserId> {
        self.0.as_ref().map(|s| s.user.user_id)
    }
}

type Lookup =
    dyn Fn(String) -> LocalBoxFuture<'static, Result<Option<Session>, ApiError>> + Send + Sync;

/// The app's session lookup, registered once at startup, so that the
/// extractors need not know which store the app runs on.
#[derive(Clone)]
pub struct SessionLookup(Arc<Lookup>);

impl SessionLookup {
    pub fn of<S: Store>(app: web::Data<App<S>>) -> Self {
        Self(Arc::new(move |token: String| {
            let app = app.clone();
            Box::pin(async move { app.session_for(&token).await })
        }))
    }

    fn from_app(req: &HttpRequest) -> Result<Self, ApiError> {
        req.app_data::<Self>().cloned().ok_or_else(|| {
            ApiError::internal(&anyhow::anyhow!(
                "no SessionLookup registered: Application::build registers it"
            ))
        })
    }
}

/// The bearer token of a request, if it sent one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The session of `req`'s bearer token: `None` without a token, 401 for a
/// token that is not (or no longer) valid.
fn session_of(req: &HttpRequest) -> LocalBoxFuture<'static, Result<Option<Session>, ApiError>> {
    let token = bearer_token(req).map(str::to_owned);
    let lookup = SessionLookup::from_app(req);
    Box::pin(async move {
        let Some(token) = token else {
            return Ok(None);
        };
        match (lookup?.0)(token).await? {
            Some(session) => Ok(Some(session)),
            None => Err(ApiError::unauthorized()),
        }
    })
}

impl FromRequest for Session {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = session_of(req);
        Box::pin(async move { session.await?.ok_or_else(ApiError::unauthorized) })
    }
}

impl FromRequest for MaybeSession {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = session_of(req);
        Box::pin(async move { Ok(Self(session.await?)) })
    }
}

/// The bearer token a request must carry (401 `unauthorized` without
/// one), for a use case that resolves the session itself together with
/// what it reads (the feed: [`App::feed_for_token`]).
#[derive(Debug, Clone)]
pub struct BearerToken(pub String);

impl FromRequest for BearerToken {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            bearer_token(req)
                .map(|t| Self(t.to_owned()))
                .ok_or_else(ApiError::unauthorized),
        )
    }
}

/// `?limit=20&before=<cursor>`, both optional, as a [`PageQuery`]: 422
/// `invalid_limit` / `invalid_cursor` / `invalid_query` otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Page(pub PageQuery);

/// The query string of a page, before parsing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1–100 (default 20).
    pub limit: Option<String>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
}

impl PageParams {
    pub fn parse(&self) -> Result<PageQuery, ApiError> {
        Ok(PageQuery::parse(
            self.limit.as_deref(),
            self.before.as_deref(),
        )?)
    }
}

impl FromRequest for Page {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            web::Query::<PageParams>::from_query(req.query_string())
                .map_err(query_error)
                .and_then(|params| params.parse())
                .map(Page),
        )
    }
}

/// An id in a path (`/api/users/{id}`): a positive decimal integer that
/// fits in an i64; `abc`, `-1` or an overflowing id is a clean 400
/// `invalid_id` (see [`path_error`]).
#[derive(Debug, Clone, Copy)]
pub struct PathId(i64);

impl PathId {
    pub fn user(self) -> UserId {
        UserId(self.0)
    }

    pub fn photo(self) -> PhotoId {
        PhotoId(self.0)
    }
}

impl<'de> Deserialize<'de> for PathId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_id(&raw)
            .map(PathId)
            .map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// The one handler of path errors: every typed path parameter is an id.
pub fn path_error(err: actix_web::error::PathError) -> ApiError {
    match err {
        actix_web::error::PathError::Deserialize(e) => {
            ApiError::bad_request("invalid_id", e.to_string())
        }
        other => ApiError::bad_request("invalid_id", other.to_string()),
    }
}

/// Who a request comes from, as the sign-in throttle counts clients: the
/// peer's IP address (an IPv6 client by its /64, the block one host
/// usually has), or with `trust_forwarded_for` the address the proxy in
/// front saw (the last entry of `X-Forwarded-For`, the one the proxy
/// appended: entries before it are whatever the client sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub String);

impl ClientAddr {
    pub fn of(req: &HttpRequest, trust_forwarded_for: bool) -> Self {
        let forwarded = trust_forwarded_for
            .then(|| {
                req.headers()
                    .get_all("x-forwarded-for")
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
                    .last()
            })
            .flatten();
        // `to_canonical`: an IPv4 client on a dual-stack socket is itself.
        match forwarded
            .or_else(|| req.peer_addr().map(|a| a.ip()))
            .map(|ip| ip.to_canonical())
        {
            Some(std::net::IpAddr::V6(ip)) => {
                let s = ip.segments();
                Self(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
            }
            Some(ip) => Self(ip.to_string()),
            None => Self("unknown".into()),
        }
    }
}
