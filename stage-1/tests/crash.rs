//! Crash safety of stage 1 with its default settings (WAL, synchronous
//! FULL, group commit on): SIGKILL in the middle of a write-heavy load
//! loses no acknowledged write, and the SQLite file and the uploads stay
//! consistent.

use contract::crash::crash_during_writes;
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
        "stage 1 crash test: {} writes acknowledged at the kill, {} in all, {} found after restart; largest group commit {:?} writes",
        report.acked_at_kill, report.acked, report.found, report.largest_commit
    );
    assert_eq!(report.found, report.acked, "{}", report.verify_output);
    // The guarantee held while writes really were grouped: 16 writers
    // with no think time keep the writer's queue full.
    let largest = report.largest_commit.expect("stage 1 reports its commits");
    assert!(
        largest > 1.0,
        "no commit held more than one write ({largest}): group commit did not group"
    );
}

/// 2,000 users with no think time against the default limits: up, bounded,
/// shedding fast, recovered (see `contract::spike`).
#[test]
fn a_spike_is_shed_and_recovered_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("UTF-8 temp path");
    contract::spike::spike_test(
        Path::new(env!("CARGO_BIN_EXE_stage-1")),
        &["--data-dir", data],
    );
}
