//! Stage 1 under a burst of uploads that decode to huge images, in a
//! memory-limited cgroup: the process lives and answers as documented (see
//! `contract::hostile::image_burst_in_a_memory_limit`). The other
//! hostile-client cases run in the contract suite (`tests/contract.rs`).

use contract::hostile::{CAGE_BYTES, image_burst_in_a_memory_limit};
use std::path::Path;

#[test]
fn an_image_burst_stays_within_a_memory_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = image_burst_in_a_memory_limit(
        Path::new(env!("CARGO_BIN_EXE_stage-1")),
        &["--data-dir", dir.path().to_str().expect("UTF-8 temp path")],
    );
    eprintln!(
        "stage 1 image burst: answers {:?}, peak {} MiB of {} MiB",
        report.statuses,
        report.peak_bytes >> 20,
        CAGE_BYTES >> 20
    );
}
