//! Minigram stage 1: the simple first version a team would ship.
//!
//! One process serves everything; state is one SQLite file plus photos in a
//! directory on local disk; no cache. The app itself (routes, pages, auth)
//! is the shared `minigram` crate; this crate is only the storage
//! ([`store::SqliteStore`]) and the command line.

pub mod cli;
pub mod probe;
pub mod store;
pub mod writer;

pub use store::{JournalMode, SqliteConfig, SqliteStore, Synchronous};
pub use writer::GroupCommit;
