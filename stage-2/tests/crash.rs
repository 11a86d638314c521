//! Crash safety of a stage-2 process with its default settings: SIGKILL in
//! the middle of a write-heavy load loses no acknowledged write (Postgres
//! committed it before the answer; sessions live in Redis), and the data
//! stay consistent.

mod common;

use contract::Backend;
use contract::crash::crash_during_writes;
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_survives_sigkill() {
    let (config, name) = common::fresh_config();
    let db = common::Pg::with_config(config.clone(), name).await;
    let flags = common::storage_flags(&config, db.uploads_dir().parent().unwrap());
    let report = tokio::task::spawn_blocking(move || {
        crash_during_writes(
            Path::new(env!("CARGO_BIN_EXE_stage-2")),
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    })
    .await
    .expect("crash test");
    eprintln!(
        "stage 2 crash test: {} writes acknowledged at the kill, {} in all, {} found after restart",
        report.acked_at_kill, report.acked, report.found
    );
    assert_eq!(report.found, report.acked, "{}", report.verify_output);
    drop(db);
}

/// 2,000 users with no think time against the default limits: up, bounded,
/// shedding fast, recovered (see `contract::spike`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_is_shed_and_recovered_from() {
    let (config, name) = common::fresh_config();
    let db = common::Pg::with_config(config.clone(), name).await;
    let flags = common::storage_flags(&config, db.uploads_dir().parent().unwrap());
    tokio::task::spawn_blocking(move || {
        contract::spike::spike_test(
            Path::new(env!("CARGO_BIN_EXE_stage-2")),
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    })
    .await
    .expect("spike test");
    drop(db);
}
