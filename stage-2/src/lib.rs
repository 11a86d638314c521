//! Minigram stage 2: the first scale-out step.
//!
//! App processes keep no state of their own: users, photos, follows and
//! likes are in Postgres (a bounded sqlx pool), sessions and cached feeds in
//! Redis (a bounded bb8 pool), uploaded files in a directory every process
//! shares. So any number of processes can run behind a load balancer. The
//! app itself is the shared `minigram` crate; this crate is the storage
//! ([`store::Stage2Store`]) and the command line.

pub mod cleanup;
pub mod cli;
pub mod fanout;
mod import;
pub mod store;
pub mod worker;

pub use store::{Stage2Config, Stage2Store};
