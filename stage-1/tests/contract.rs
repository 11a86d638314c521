//! Stage 1 against both contract suites (HTTP and storage), each case with
//! its own fresh SQLite file in a temporary directory.

use contract::Backend;
use stage_1::{SqliteConfig, SqliteStore};
use std::path::PathBuf;
use tempfile::TempDir;

pub struct Sqlite {
    dir: TempDir,
    store: SqliteStore,
}

impl Sqlite {
    fn db_path(&self) -> PathBuf {
        self.dir.path().join("minigram.sqlite3")
    }
}

impl Backend for Sqlite {
    type Store = SqliteStore;

    async fn fresh() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(SqliteConfig::new(dir.path().join("minigram.sqlite3")))
            .expect("open sqlite");
        Self { dir, store }
    }

    fn store(&self) -> SqliteStore {
        self.store.clone()
    }

    fn uploads_dir(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    async fn count(&self, table: &'static str) -> i64 {
        let path = self.db_path();
        tokio::task::spawn_blocking(move || {
            rusqlite::Connection::open(path)
                .and_then(|c| {
                    c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                })
                .expect("count rows")
        })
        .await
        .expect("count task")
    }
}

contract::contract_tests!(Sqlite);

/// Stage 1's state is its SQLite file: a restart keeps everything.
#[tokio::test]
async fn data_survives_a_restart() {
    use minigram::Store as _;
    let app = contract::spawn_app::<Sqlite>().await;
    let alice = app.registered("alice").await;
    app.posted_photo(&alice, "kept").await;
    app.stop().await;
    let store = SqliteStore::open(SqliteConfig::new(app.backend.db_path())).unwrap();
    let page = store
        .explore(None, minigram::domain::PageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(page.photos.len(), 1);
    assert_eq!(page.photos[0].caption, "kept");
    let creds = store.credentials_for("alice").await.unwrap().unwrap();
    assert_eq!(creds.user_id.0, alice.id);
}
