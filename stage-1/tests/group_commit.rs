//! Group commit in stage 1's writer, on a real SQLite file: writes queued
//! together commit in one transaction, and one write's constraint failure
//! fails only that write.

use minigram::domain::Username;
use minigram::store::{NewUser, Store, StoreError};
use stage_1::{GroupCommit, SqliteConfig, SqliteStore};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn store_in(dir: &std::path::Path, group_commit: GroupCommit) -> SqliteStore {
    let mut config = SqliteConfig::new(dir.join("minigram.sqlite3"));
    config.group_commit = group_commit;
    SqliteStore::open(config).expect("open sqlite")
}

fn user(name: &str) -> NewUser {
    NewUser {
        username: Username::parse(name).expect("a valid username"),
        email: None,
        password_hash: "not-a-real-hash".into(),
    }
}

/// Registers every name at once, each from its own task, and returns the
/// outcomes in order.
async fn register_at_once(store: &SqliteStore, names: &[&str]) -> Vec<Result<(), StoreError>> {
    let writes: Vec<_> = names
        .iter()
        .map(|name| {
            let (store, new) = (store.clone(), user(name));
            tokio::spawn(async move { store.create_user(new).await.map(|_| ()) })
        })
        .collect();
    let mut outcomes = Vec::new();
    for w in writes {
        outcomes.push(w.await.expect("write task"));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_write_in_a_group_fails_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A window long enough that the five writes below, sent at once,
    // wait for each other and commit as one group.
    let store = store_in(
        dir.path(),
        GroupCommit {
            max_batch: 64,
            wait: Duration::from_millis(300),
        },
    );
    let outcomes = register_at_once(&store, &["alice", "bob", "alice", "carol", "dave"]).await;
    let stats = store.writer_stats();
    assert_eq!(
        stats.largest_batch.load(Ordering::Relaxed),
        5,
        "the five writes were one group"
    );
    assert_eq!(stats.commits.load(Ordering::Relaxed), 1, "one commit");
    let taken = outcomes
        .iter()
        .filter(|o| matches!(o, Err(StoreError::UsernameTaken)))
        .count();
    assert_eq!(taken, 1, "only the second alice fails: {outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 4);
    // The others are durable: a fresh store on the same file sees them.
    drop(store);
    let reopened = store_in(dir.path(), GroupCommit::OFF);
    for name in ["alice", "bob", "carol", "dave"] {
        assert!(
            reopened
                .credentials_for(name)
                .await
                .expect("read")
                .is_some(),
            "{name} was committed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_group_commit_off_every_write_commits_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_in(dir.path(), GroupCommit::OFF);
    let outcomes = register_at_once(&store, &["erin", "frank", "grace", "erin"]).await;
    let stats = store.writer_stats();
    assert_eq!(stats.largest_batch.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.commits.load(Ordering::Relaxed),
        3,
        "the failed write rolled back"
    );
    assert_eq!(stats.writes.load(Ordering::Relaxed), 4);
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 3);
}
