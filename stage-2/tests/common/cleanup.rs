//! Removing what a test or a benchmark made on the shared servers: its
//! database and its Redis keys. Shared by the tests (`common`) and the
//! stage-2 benchmark (through `#[path]`).

/// Drops the database `name` on the Postgres at `server` and deletes the
/// keys under `prefix:` on the Redis at `redis_url`; errors are ignored
/// (what is gone is gone; what is left is named after the test).
pub async fn drop_database_and_keys(server: &str, name: &str, redis_url: &str, prefix: &str) {
    use sqlx::Connection as _;
    if let Ok(mut conn) = sqlx::PgConnection::connect(&format!("{server}/postgres")).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
    if let Ok(client) = redis::Client::open(redis_url)
        && let Ok(mut conn) = client.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }
}
