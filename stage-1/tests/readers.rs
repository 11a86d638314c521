//! Stage 1's read-connection figures, on a real SQLite file: the time read
//! slots are held always contains the time spent running SQL, so the lab's
//! "held / reading" row can never show more connections reading than held.

use minigram::figure_keys as keys;
use minigram::store::Store;
use stage_1::{SqliteConfig, SqliteStore};

fn figure(store: &SqliteStore, key: &str) -> f64 {
    store
        .figures()
        .into_iter()
        .find(|f| f.key == key)
        .unwrap_or_else(|| panic!("stage 1 reports {key}"))
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_slots_are_held_at_least_as_long_as_they_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = SqliteConfig::new(dir.path().join("minigram.sqlite3"));
    // Fewer slots than reads, so most reads wait at the gate and then for
    // a blocking thread: held time grows beyond the SQL's own.
    config.max_readers = 2;
    let store = SqliteStore::open(config).expect("open sqlite");
    let reads: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.credentials_for(&format!("nobody{i}")).await })
        })
        .collect();
    for r in reads {
        assert!(r.await.expect("read task").expect("read").is_none());
    }
    let reading = figure(&store, keys::SQLITE_READ_MS);
    let held = figure(&store, keys::SQLITE_READ_HELD_MS);
    assert!(reading > 0.0, "64 reads ran SQL for some time");
    assert!(
        held >= reading,
        "slots held {held} ms, less than the {reading} ms they read"
    );
    assert_eq!(
        figure(&store, keys::SQLITE_READERS_BUSY),
        0.0,
        "every slot given back"
    );
}
