//! Removing what a lab run or a test made on shared servers: its database
//! and its Redis keys. `stage-2 drop-data` runs it (the lab calls that when
//! a run ends); the tests and the benchmark call it directly.
//!
//! Through sqlx and the redis crate, never a shell: the URLs and the prefix
//! are passed as values, not pasted into a command line.

use anyhow::Context;
use sqlx::Postgres as Pg;
use sqlx::migrate::MigrateDatabase;

use crate::store::server_of;

/// Keys deleted per `DEL`, so one call never carries a huge argument list.
const DEL_BATCH: usize = 500;

/// Drops the database of `database_url` (closing its connections first)
/// and deletes the keys under `prefix:` on the Redis at `redis_url`. A
/// database or keys that are already gone are not an error.
pub async fn drop_data(database_url: &str, redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    let pg = server_of(database_url);
    if Pg::database_exists(database_url)
        .await
        .with_context(|| format!("cannot reach Postgres at {pg}"))?
    {
        Pg::force_drop_database(database_url)
            .await
            .with_context(|| format!("cannot drop the database on {pg}"))?;
    }
    delete_keys(redis_url, prefix).await.with_context(|| {
        format!(
            "cannot delete the keys {prefix}:* on Redis at {}",
            server_of(redis_url)
        )
    })
}

/// SCANs for the keys under `prefix:` (KEYS would block a shared server)
/// and deletes them in batches.
pub async fn delete_keys(redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    let mut keys: Vec<String> = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for batch in keys.chunks(DEL_BATCH) {
        let _: () = redis::cmd("DEL").arg(batch).query_async(&mut conn).await?;
    }
    Ok(())
}
