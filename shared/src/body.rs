//! Request bodies are read in full, under a deadline and a memory budget,
//! *before* a request is admitted (see [`crate::admission`]).
//!
//! Why first: a permit taken before the body is read can be held by a
//! client that declares a large `Content-Length` and then sends a byte a
//! second. A few hundred such connections from one client held every
//! permit of stage 1 and everyone else got `503 overloaded` for as long as
//! the trickle lasted. Read first, a slow client holds only its connection
//! and the bytes it has really sent, and both are bounded:
//!
//! - **time**: the whole body must arrive within [`BodyLimits::deadline`]
//!   (10 s by default, shorter than the request timeout); a client that
//!   sends a 60 kB sign-in over 15 s is not a person. Past it the answer is
//!   `408 body_timeout` and the connection is closed.
//! - **size**: 64 KiB for JSON and forms, the upload limit plus its
//!   envelope for multipart; a declared `Content-Length` over the limit is
//!   refused (413) before a byte is read.
//! - **memory**: bytes buffered by all requests of the process together
//!   are bounded by [`BodyLimits::memory`] (64 MiB by default); a body that
//!   would exceed it gets a fast `503 overloaded` with Retry-After.
//!
//! The other way, counting connections per client address and capping them,
//! was not taken: behind a load balancer every client has the balancer's
//! address (one cap would throttle everyone), and many addresses get
//! around it. Behind nginx (`docker compose`) the proxy buffers request
//! bodies itself (`proxy_request_buffering on`, its default), so the app
//! sees whole bodies arriving fast, and nginx's `client_body_timeout`
//! (60 s between two reads by default) bounds a slow client there.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{ConnectionType, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Largest JSON or form body (the JSON and form extractors' limit too).
pub const SMALL_BODY_MAX: usize = 64 * 1024;
/// What a multipart upload may carry besides the photo: boundaries, part
/// headers, the caption.
pub const UPLOAD_ENVELOPE: usize = 64 * 1024;

/// How long and how much a process waits for and keeps of request bodies.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// The whole body must have arrived this long after its headers.
    pub deadline: Duration,
    /// Bytes of bodies held in memory by all requests at once.
    pub memory: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            memory: 64 * 1024 * 1024,
        }
    }
}

/// The memory budget shared by all workers of a process.
pub struct BodyGate {
    /// One permit per byte buffered.
    bytes: Arc<Semaphore>,
    limits: BodyLimits,
    /// Largest upload (the photo alone), from the app's settings.
    max_upload: usize,
}

impl BodyGate {
    pub fn new(limits: BodyLimits, max_upload: usize) -> Self {
        let memory = limits.memory.clamp(SMALL_BODY_MAX, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(memory)),
            limits,
            max_upload,
        }
    }

    /// The most a body of this request may hold.
    fn limit_for(&self, req: &ServiceRequest) -> usize {
        let multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/")
            });
        if multipart {
            self.max_upload + UPLOAD_ENVELOPE
        } else {
            SMALL_BODY_MAX
        }
    }
}

fn declared_length(req: &ServiceRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("this request's body is limited to {limit} bytes"),
    )
}

/// Reads the body into memory, holding a share of the budget per byte.
async fn read_all(
    gate: &BodyGate,
    payload: &mut Payload,
    limit: usize,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), ApiError> {
    let deadline = tokio::time::Instant::now() + gate.limits.deadline;
    let mut body = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        gate.limits.deadline.as_secs_f64()
                    ),
                ));
            }
            Ok(None) => return Ok((body, held)),
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    format!("the request body could not be read: {e}"),
                ));
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        let Ok(more) = gate
            .bytes
            .clone()
            .try_acquire_many_owned(chunk.len() as u32)
        else {
            return Err(ApiError::unavailable(
                "overloaded",
                "the server holds as many request bodies as it can; retry shortly",
            ));
        };
        match &mut held {
            Some(permit) => permit.merge(more),
            None => held = Some(more),
        }
        body.extend_from_slice(&chunk);
    }
}

/// Middleware: the whole body in memory within the deadline and budget, or
/// a 4xx/503 at once; then the request goes on (to admission) with it. A
/// refused body was not read to its end, so its connection is closed.
pub async fn read_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(gate) = req.app_data::<web::Data<BodyGate>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    // A body comes with a non-zero length or in chunks.
    let declared = declared_length(&req);
    if !req.headers().contains_key(header::TRANSFER_ENCODING) && declared.unwrap_or(0) == 0 {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let limit = gate.limit_for(&req);
    let refused = if declared.is_some_and(|n| n > limit) {
        too_large(limit)
    } else {
        let mut payload = req.take_payload();
        match read_all(&gate, &mut payload, limit).await {
            Ok((body, held)) => {
                req.set_payload(Payload::from(body));
                let res = next.call(req).await;
                // The budget is given back once the request is answered:
                // the handler holds (copies of) the bytes until then.
                drop(held);
                return Ok(res?.map_into_left_body());
            }
            Err(refused) => refused,
        }
    };
    let mut res = refused.error_response();
    res.head_mut().set_connection_type(ConnectionType::Close);
    Ok(req.into_response(res).map_into_right_body())
}
