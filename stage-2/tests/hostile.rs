//! A stage-2 process under a burst of uploads that decode to huge images,
//! in a memory-limited cgroup, with inline processing and with the queued
//! worker: the process lives and answers as documented (see
//! `contract::hostile::image_burst_in_a_memory_limit`). The other
//! hostile-client cases run in the contract suite (`tests/contract.rs`).

mod common;

use contract::Backend;
use contract::hostile::{CAGE_BYTES, image_burst_in_a_memory_limit};
use std::path::Path;

async fn burst(processing: &'static str) {
    let (config, name) = common::fresh_config();
    let db = common::Pg::with_config(config.clone(), name).await;
    let mut flags = common::storage_flags(&config, db.uploads_dir().parent().unwrap());
    flags.extend(["--photo-processing".into(), processing.into()]);
    let report = tokio::task::spawn_blocking(move || {
        image_burst_in_a_memory_limit(
            Path::new(env!("CARGO_BIN_EXE_stage-2")),
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    })
    .await
    .expect("image burst");
    eprintln!(
        "stage 2 image burst ({processing}): answers {:?}, peak {} MiB of {} MiB",
        report.statuses,
        report.peak_bytes >> 20,
        CAGE_BYTES >> 20
    );
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_image_burst_stays_within_a_memory_limit() {
    burst("inline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_image_burst_stays_within_a_memory_limit() {
    burst("queue").await;
}
