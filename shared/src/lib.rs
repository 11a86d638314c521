//! Minigram: the photo-sharing app that both stages of the scaling lab serve.
//!
//! Everything that does not depend on the architecture lives here once: the
//! HTTP contract ([`api`]), the HTML pages ([`pages`]), parsing of client
//! input ([`domain`]), passwords and tokens ([`auth`]), photo processing
//! ([`images`]), per-request time attribution ([`timing`]) and dataset
//! generation ([`seed`]). A stage supplies a [`store::Store`]
//! implementation and a thin `main`; `startup::Application` does the rest.
//!
//! A request reads: route table ([`api::configure`]) → handler, whose
//! extractors parse the caller and the input ([`extract`]) → one use case
//! of [`App`] → one `Store` call → JSON.

pub mod admission;
pub mod api;
pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod domain;
pub mod error;
pub mod extract;
pub mod figure_keys;
pub mod image_pool;
pub mod images;
pub mod job_threads;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod read_floor;
pub mod seed;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod timing;

pub use app::{App, Settings};
pub use startup::Application;
pub use store::Store;
