//! The read floor of a request: the least position in the database's
//! history that its reads must see, so that a person reads their own
//! writes even when reads go to a replica that lags.
//!
//! A middleware opens a task-local scope around each request (as
//! `timing` does). A store that routes reads to replicas raises the floor
//! when it resolves the caller's session (to the position of their last
//! write) and when it commits a write in this request, and reads it when
//! it picks where a read goes: a replica that has not yet replayed up to
//! the floor is passed over. Stage 1 (one database, no replicas) never
//! raises it. The floor is an opaque number to this crate (stage 2 stores
//! a Postgres WAL position there); 0 means "any copy will do".

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::cell::Cell;

tokio::task_local! {
    static FLOOR: Cell<u64>;
}

/// Raises the current request's floor to `at` (never lowers it); a no-op
/// outside a request.
pub fn raise(at: u64) {
    let _ = FLOOR.try_with(|f| f.set(f.get().max(at)));
}

/// The current request's floor: 0 outside a request or before anything
/// raised it.
pub fn get() -> u64 {
    FLOOR.try_with(Cell::get).unwrap_or(0)
}

/// Runs `work` with a floor of its own starting at 0 (what the middleware
/// does for each request; tests use it directly).
pub async fn scope<F: std::future::Future>(work: F) -> F::Output {
    FLOOR.scope(Cell::new(0), work).await
}

/// Middleware: each request starts with a floor of 0.
pub async fn per_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    scope(next.call(req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_floor_only_rises_and_ends_with_its_scope() {
        assert_eq!(get(), 0, "outside a request: no floor");
        raise(5); // outside a scope: ignored, no panic
        scope(async {
            assert_eq!(get(), 0);
            raise(10);
            raise(3);
            assert_eq!(get(), 10, "a lower position never lowers the floor");
            scope(async { assert_eq!(get(), 0, "a new scope starts at 0") }).await;
        })
        .await;
        assert_eq!(get(), 0);
    }
}
