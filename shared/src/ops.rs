//! The operator's routes: health, readiness, metrics (Prometheus text, the
//! JSON window, the live page and its script).
//!
//! They are mounted outside admission ([`crate::startup`]), so a process
//! that is full still answers its load balancer, its scraper and the
//! person watching the live page; this route table is the one list of what
//! is never shed, and the OpenAPI document reads the same fact from their
//! `ops` tag (every other operation is documented as possibly `503`).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::resource;
use crate::app::App;
use crate::error::ApiError;
use crate::store::Store;
use crate::telemetry::{HISTORY, Snapshot, Telemetry};

/// The tag every operation mounted here carries in the OpenAPI document.
pub const TAG: &str = "ops";

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    pub status: String,
}

/// Registers the operator routes; [`crate::startup`] mounts them before
/// the admitted scope.
pub fn configure<S: Store>(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health").route(web::get().to(health)))
        .service(resource("/ready").route(web::get().to(ready::<S>)))
        .service(resource("/metrics").route(web::get().to(metrics_text)))
        .service(resource("/api/metrics").route(web::get().to(metrics_json)))
        .service(resource("/metrics.html").route(web::get().to(metrics_page)))
        .service(resource("/static/metrics.js").route(web::get().to(metrics_script)));
}

#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "The process is up", body = StatusBody)))]
pub async fn health() -> web::Json<StatusBody> {
    web::Json(StatusBody {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/ready", tag = "ops",
    responses(
        (status = 200, description = "Storage answers", body = StatusBody),
        (status = 503, description = "`not_ready`", body = crate::error::ErrorBody),
    ))]
pub async fn ready<S: Store>(app: web::Data<App<S>>) -> Result<web::Json<StatusBody>, ApiError> {
    match app.store.ping().await {
        Ok(()) => Ok(web::Json(StatusBody {
            status: "ready".into(),
        })),
        Err(e) => {
            tracing::warn!(error = ?e, "readiness check failed");
            Err(ApiError::unavailable(
                "not_ready",
                "storage does not answer",
            ))
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics_text(t: web::Data<std::sync::Arc<Telemetry>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(t.render())
}

/// `?history=N`: also the last N one-second samples (at most 300).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    pub history: Option<usize>,
}

#[utoipa::path(get, path = "/api/metrics", tag = "ops", params(MetricsParams),
    responses(
        (status = 200, description = "RED metrics over the last 10 s, per route, and the stage's saturation figures", content_type = "application/json"),
        (status = 422, description = "`invalid_query`", body = crate::error::ErrorBody),
    ))]
pub async fn metrics_json(
    t: web::Data<std::sync::Arc<Telemetry>>,
    q: web::Query<MetricsParams>,
) -> HttpResponse {
    let snapshot: Snapshot = t.snapshot(q.history.unwrap_or(0).min(HISTORY));
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(snapshot)
}

#[utoipa::path(get, path = "/metrics.html", tag = "ops",
    responses((status = 200, description = "The live metrics page", content_type = "text/html")))]
pub async fn metrics_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(include_str!("../static/metrics.html"))
}

pub async fn metrics_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../static/metrics.js"))
}
