//! Crash safety of stage 1 with its default settings (WAL, synchronous
//! FULL): SIGKILL in the middle of a write-heavy load loses no acknowledged
//! write, and the SQLite file and the uploads stay consistent.

use minigram::testing::crash::crash_during_writes;
use std::path::Path;

#[test]
fn an_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("UTF-8 temp path");
    let report = crash_during_writes(
        Path::new(env!("CARGO_BIN_EXE_stage-1")),
        &["--data-dir", data],
    );
    eprintln!(
        "stage 1 crash test: {} writes acknowledged at the kill, {} in all, {} found after restart",
        report.acked_at_kill, report.acked, report.found
    );
    assert_eq!(report.found, report.acked, "{}", report.verify_output);
}

/// 2,000 users with no think time against the default limits: up, bounded,
/// shedding fast, recovered (see `minigram::testing::spike`).
#[test]
fn a_spike_is_shed_and_recovered_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("UTF-8 temp path");
    minigram::testing::spike::spike_test(
        Path::new(env!("CARGO_BIN_EXE_stage-1")),
        &["--data-dir", data],
    );
}
