//! SQLite's raw commit rate on this disk: one-row transactions committed
//! one after another on a scratch table, with the journal and sync modes
//! stage 1 serves with. The group-commit experiment measures it in the
//! same run as its variants (`stage-1 commit-rate`), so the writer's
//! writes per second can be read against what SQLite itself can commit.

use anyhow::Context;
use rusqlite::params;
use std::time::{Duration, Instant};

use crate::store::SqliteStore;

/// What the probe measured.
#[derive(Debug)]
pub struct CommitRate {
    pub commits: u64,
    pub secs: f64,
    pub commits_per_sec: f64,
}

impl CommitRate {
    /// One line of JSON, what `stage-1 commit-rate` prints for the lab.
    pub fn json(&self) -> String {
        format!(
            r#"{{"commits":{},"secs":{:.3},"commitsPerSec":{:.1}}}"#,
            self.commits, self.secs, self.commits_per_sec
        )
    }
}

/// Commits `INSERT`s one per transaction for `secs` on the store's file
/// (a fresh one: the probe's table is created and dropped).
pub fn commit_rate(store: &SqliteStore, secs: f64) -> anyhow::Result<CommitRate> {
    let length = Duration::from_secs_f64(secs);
    store
        .writer()
        .alone(move |conn| -> anyhow::Result<CommitRate> {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS commit_probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)",
            )?;
            let started = Instant::now();
            let mut commits = 0u64;
            while started.elapsed() < length {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                tx.prepare_cached("INSERT INTO commit_probe (at) VALUES (?1)")?
                    .execute(params![commits as i64])?;
                tx.commit()?;
                commits += 1;
            }
            let secs = started.elapsed().as_secs_f64();
            conn.execute_batch("DROP TABLE commit_probe")?;
            Ok(CommitRate {
                commits,
                secs,
                commits_per_sec: commits as f64 / secs,
            })
        })
        .context("the SQLite writer has stopped")?
}
