//! Builds the HTTP server around an [`App`]. Tests start it on port 0.

use actix_web::dev::Server;
use actix_web::middleware::{Condition, DefaultHeaders, from_fn};
use actix_web::{App as ActixApp, HttpServer, web};
use anyhow::Context;
use std::net::TcpListener;
use std::sync::Arc;

use crate::admission::{self, Admission};
use crate::app::App;
use crate::body::{self, BodyGate};
use crate::error::{json_error, query_error};
use crate::extract::{SessionLookup, path_error};
use crate::store::Store;
use crate::telemetry::{self, Telemetry};
use crate::{api, ops, pages, read_floor, timing};

/// A bound, not yet running server.
pub struct Application {
    server: Server,
    port: u16,
}

impl Application {
    /// Binds `listen` (e.g. `127.0.0.1:0`) and builds the server with
    /// `workers` async workers (0: one per core).
    pub fn build<S: Store>(app: App<S>, listen: &str, workers: usize) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .with_context(|| format!("cannot listen on {listen}: is another server using it?"))?;
        let port = listener.local_addr()?.port();
        let metrics_on = app.settings.metrics;
        let telemetry = {
            let store = app.store.clone();
            let hasher = app.hasher.clone();
            Telemetry::new(
                app.settings.stage,
                Arc::new(move || store.figures()),
                Arc::new(move || hasher.in_flight()),
            )
        };
        if metrics_on {
            telemetry.start_sampler();
        }
        purge_sessions_every(app.store.clone(), app.settings.session_purge_every);
        let telemetry = web::Data::new(telemetry);
        let admission = web::Data::new(Admission::new(app.settings.limits.clone()));
        let bodies = web::Data::new(BodyGate::new(
            app.settings.bodies.clone(),
            app.settings.max_upload_bytes,
        ));
        let data = web::Data::new(app);
        let sessions = SessionLookup::of(data.clone());
        let mut server = HttpServer::new(move || {
            ActixApp::new()
                .app_data(data.clone())
                .app_data(telemetry.clone())
                .app_data(admission.clone())
                .app_data(bodies.clone())
                .app_data(sessions.clone())
                .app_data(web::PathConfig::default().error_handler(|e, _| path_error(e).into()))
                .app_data(
                    web::JsonConfig::default()
                        .limit(body::SMALL_BODY_MAX)
                        .error_handler(|e, _| json_error(e).into()),
                )
                .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(e).into()))
                .app_data(web::FormConfig::default().limit(body::SMALL_BODY_MAX))
                .wrap(from_fn(read_floor::per_request))
                .wrap(from_fn(timing::server_timing))
                // Outside admission: a slow body holds no permit (body.rs).
                .wrap(from_fn(body::read_body))
                .wrap(Condition::new(
                    metrics_on,
                    from_fn(telemetry::record_requests),
                ))
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
                // Matched first, and never shed: what an operator watches.
                .configure(ops::configure::<S>)
                .configure(pages::configure_assets)
                // Everything else takes a permit (admission.rs).
                .service(
                    web::scope("")
                        .wrap(from_fn(admission::admit))
                        .configure(api::configure::<S>)
                        .configure(pages::configure::<S>)
                        .default_service(web::to(api::not_found)),
                )
        })
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            server: server.shutdown_timeout(5).run(),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Removes expired sessions every `every` on the current runtime, so a
/// store does not keep every session ever made.
fn purge_sessions_every<S: Store>(store: S, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is at once: nothing expired yet
        loop {
            tick.tick().await;
            match store.purge_expired_sessions().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(sessions = n, "expired sessions purged"),
                Err(e) => tracing::warn!(error = %e, "purging expired sessions failed"),
            }
        }
    });
}
