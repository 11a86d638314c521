//! Admission control: how much work a process accepts at once, and for how
//! long.
//!
//! Past its breaking point a stage must shed, not queue. Every request
//! takes one of `max_in_flight` permits before it runs (after its body has
//! arrived in full: [`crate::body`], so a slow client holds no permit
//! while it sends); when none is free it
//! is answered at once with `503 overloaded` and `Retry-After`, without
//! touching storage or the hasher. Each admitted request also gets a
//! deadline (`request_timeout`): if it has not answered by then it gets
//! `503 timeout` and its permit comes back. Together with the bounded hash
//! queue and the bounded pools this bounds memory and latency under any
//! load: a spike costs a burst of fast 503s, not a pile of waiting requests.
//!
//! A write that times out may still commit (the blocking work it started is
//! not interrupted), but it was never acknowledged: the client saw a 503 and
//! retrying is safe because likes and follows are idempotent.
//!
//! Health, readiness and the metrics endpoints ([`crate::ops`]) are
//! mounted outside the scope this middleware wraps, so an operator can
//! still see a process that is shedding; there is no list of exemptions.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The limits one process enforces (see the module docs).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests that may be in progress at once; more get a fast 503.
    pub max_in_flight: usize,
    /// Longest an admitted request may take before it is answered 503.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: 512,
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// The permits, shared by all workers of a process.
pub struct Admission {
    permits: Arc<Semaphore>,
    limits: Limits,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            limits,
        }
    }
}

/// Middleware: admit, or shed with 503; answer 503 once the deadline passes.
pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(admission) = req.app_data::<web::Data<Admission>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let Ok(_permit) = admission.permits.clone().try_acquire_owned() else {
        let shed = ApiError::unavailable(
            "overloaded",
            "the server is at its limit of requests in progress; retry shortly",
        );
        return Ok(req
            .into_response(shed.error_response())
            .map_into_right_body());
    };
    let path = req.path().to_owned();
    match tokio::time::timeout(admission.limits.request_timeout, next.call(req)).await {
        Ok(res) => Ok(res?.map_into_left_body()),
        Err(_) => {
            tracing::warn!(path, "request timed out");
            // The request was moved into the abandoned call (cloning it
            // would break actix's unique access to it), so the answer
            // travels as an error, which actix renders like any ApiError.
            Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "the request took too long and was abandoned; retry shortly",
                )
            }
            .into())
        }
    }
}
