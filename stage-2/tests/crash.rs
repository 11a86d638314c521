//! Crash safety of a stage-2 process with its default settings: SIGKILL in
//! the middle of a write-heavy load loses no acknowledged write (Postgres
//! committed it before the answer; sessions live in Redis), and the data
//! stay consistent.

mod common;

use minigram::testing::Backend;
use minigram::testing::crash::crash_during_writes;
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_survives_sigkill() {
    let (config, name) = common::fresh_config();
    let db = common::Pg::with_config(config.clone(), name).await;
    let data = db.uploads_dir().parent().unwrap().to_owned();
    let data = data.to_str().expect("UTF-8 temp path").to_owned();
    let report = tokio::task::spawn_blocking(move || {
        crash_during_writes(
            Path::new(env!("CARGO_BIN_EXE_stage-2")),
            &[
                "--database-url",
                &config.database_url,
                "--redis-url",
                &config.redis_url,
                "--redis-prefix",
                &config.redis_prefix,
                "--data-dir",
                &data,
            ],
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
