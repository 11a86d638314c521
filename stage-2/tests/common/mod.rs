//! Stage 2's test storage: every test gets its own Postgres database and its
//! own Redis key prefix on the local servers, both removed afterwards.
//!
//! The servers come from `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432`) and `TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). If they cannot be reached the test fails with
//! a message saying so: it never skips. `scripts/test.sh` starts them.

#![allow(dead_code)] // each test binary uses a different part

use contract::Backend;
use rand::RngCore;
use stage_2::{Stage2Config, Stage2Store};
use std::path::PathBuf;
use tempfile::TempDir;

pub fn postgres_server() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_server() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn unique_name() -> String {
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    format!("minigram_test_{}", hex::encode(b))
}

/// The command-line storage flags of a `stage-2` process (serve, seed,
/// check) for `config`, with uploads under `data_dir`.
pub fn storage_flags(config: &Stage2Config, data_dir: &std::path::Path) -> Vec<String> {
    vec![
        "--database-url".into(),
        config.database_url.clone(),
        "--redis-url".into(),
        config.redis_url.clone(),
        "--redis-prefix".into(),
        config.redis_prefix.clone(),
        "--data-dir".into(),
        data_dir.to_str().expect("UTF-8 temp path").into(),
    ]
}

/// A config for a new, unique database and Redis prefix.
pub fn fresh_config() -> (Stage2Config, String) {
    let name = unique_name();
    let mut config = Stage2Config::new(format!("{}/{name}", postgres_server()), redis_server());
    config.redis_prefix = format!("mgtest:{name}");
    config.pg_pool_size = 5;
    config.redis_pool_size = 8;
    // Tests count round trips exactly: no connection is pinged for having
    // sat idle (one test sets this itself to see the ping counted).
    config.pg_ping_idle_after = std::time::Duration::from_secs(3600);
    (config, name)
}

pub struct Pg {
    pub store: Stage2Store,
    pub name: String,
    pub dir: TempDir,
}

impl Pg {
    pub async fn with_config(config: Stage2Config, name: String) -> Self {
        let store = Stage2Store::connect(config).await.unwrap_or_else(|e| {
            panic!(
                "stage-2 tests need Postgres and Redis ({}, {}): {e:#}. \
                 Run scripts/test.sh, which starts them, or set TEST_DATABASE_URL / TEST_REDIS_URL.",
                postgres_server(),
                redis_server()
            )
        });
        Self {
            store,
            name,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub async fn redis_keys(&self, pattern: &str) -> i64 {
        redis_keys(&self.store, pattern).await
    }
}

/// Keys under the store's prefix matching `pattern`.
pub async fn redis_keys(store: &Stage2Store, pattern: &str) -> i64 {
    let mut conn = store.redis_pool().get().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:{pattern}", store.config().redis_prefix))
        .query_async(&mut conn.conn)
        .await
        .expect("KEYS");
    keys.len() as i64
}

/// One Redis command on the store's pool (a test's own look inside).
pub async fn redis<T: redis::FromRedisValue>(store: &Stage2Store, cmd: &redis::Cmd) -> T {
    let mut conn = store.redis_pool().get().await.expect("redis");
    cmd.query_async(&mut conn.conn)
        .await
        .expect("redis command")
}

/// The Redis key of a user's timeline (`--feed-strategy push|hybrid`).
pub fn timeline_key(store: &Stage2Store, user: i64) -> String {
    format!("{}:timeline:{user}", store.config().redis_prefix)
}

/// One of the store's figures by key (0 when absent).
pub fn figure(store: &Stage2Store, key: &str) -> f64 {
    minigram::Store::figures(store)
        .into_iter()
        .find(|f| f.key == key)
        .map_or(0.0, |f| f.value)
}

/// What `Backend::count` answers for a stage-2 store: rows of a table on
/// the primary, or live sessions (keys in Redis).
pub async fn count(store: &Stage2Store, table: &'static str) -> i64 {
    if table == "sessions" {
        return redis_keys(store, "session:*").await;
    }
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(store.pg())
        .await
        .expect("count rows")
}

impl Backend for Pg {
    type Store = Stage2Store;

    async fn fresh() -> Self {
        let (config, name) = fresh_config();
        Self::with_config(config, name).await
    }

    fn store(&self) -> Stage2Store {
        self.store.clone()
    }

    fn uploads_dir(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    async fn count(&self, table: &'static str) -> i64 {
        count(&self.store, table).await
    }
}

impl Drop for Pg {
    /// Drops the test database and the test's Redis keys.
    fn drop(&mut self) {
        let database_url = format!("{}/{}", postgres_server(), self.name);
        let prefix = self.store.config().redis_prefix.clone();
        clean_up(async move {
            stage_2::cleanup::drop_data(&database_url, &redis_server(), &prefix).await
        });
    }
}

/// Runs a test's clean-up to its end on a thread and runtime of its own
/// (Drop cannot await); a failure is printed (what is left is named after
/// the test).
pub fn clean_up(work: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static) {
    let cleanup = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        if let Err(e) = rt.block_on(work) {
            eprintln!("test cleanup: {e:#} (what is left is named after the test)");
        }
    });
    let _ = cleanup.join();
}
