//! Bulk loading of a generated dataset with Postgres COPY, in one
//! transaction: ids are assigned here (continuing from the current
//! maximum) so that follows and likes can reference them, and the identity
//! sequences are moved past them afterwards.

use minigram::store::{Dataset, ImportSummary};
use sqlx::postgres::PgPool;
use std::fmt::Write as _;

/// Escapes a value for COPY's text format.
fn text(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// Sends `rows` to a COPY statement in chunks of about 1 MiB.
async fn copy(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    statement: &str,
    rows: impl Iterator<Item = String>,
) -> Result<u64, sqlx::Error> {
    let mut copy = tx.copy_in_raw(statement).await?;
    let mut buf = String::with_capacity(1 << 20);
    for row in rows {
        buf.push_str(&row);
        buf.push('\n');
        if buf.len() >= 1 << 20 {
            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
        }
    }
    if !buf.is_empty() {
        copy.send(buf.into_bytes()).await?;
    }
    copy.finish().await
}

pub async fn copy_dataset(pg: &PgPool, data: &Dataset) -> Result<ImportSummary, sqlx::Error> {
    let mut tx = pg.begin().await?;
    sqlx::query("LOCK TABLE users, photos IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let user_base: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM users")
        .fetch_one(&mut *tx)
        .await?;
    let photo_base: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM photos")
        .fetch_one(&mut *tx)
        .await?;
    let user_id = |i: usize| user_base + 1 + i as i64;
    let photo_id = |i: usize| photo_base + 1 + i as i64;

    let users = copy(
        &mut tx,
        "COPY users (id, username, email, password_hash, created_at) FROM STDIN",
        data.users.iter().enumerate().map(|(i, u)| {
            let email = u.email.as_deref().map_or_else(|| "\\N".to_owned(), text);
            format!(
                "{}\t{}\t{}\t{}\t{}",
                user_id(i),
                text(&u.username),
                email,
                text(&u.password_hash),
                u.created_at
            )
        }),
    )
    .await?;

    let mut like_counts = vec![0i64; data.photos.len()];
    for &(_, p) in &data.likes {
        like_counts[p] += 1;
    }
    let photos = copy(
        &mut tx,
        "COPY photos (id, user_id, caption, file_name, width, height, created_at, like_count) FROM STDIN",
        data.photos.iter().enumerate().map(|(i, p)| {
            let mut row = String::with_capacity(128);
            let _ = write!(
                row,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                photo_id(i),
                user_id(p.user),
                text(&p.caption),
                text(&p.file_name),
                p.width,
                p.height,
                p.created_at,
                like_counts[i]
            );
            row
        }),
    )
    .await?;

    let follows = copy(
        &mut tx,
        "COPY follows (follower_id, followee_id, created_at) FROM STDIN",
        data.follows.iter().map(|&(a, b)| {
            format!(
                "{}\t{}\t{}",
                user_id(a),
                user_id(b),
                data.users[a].created_at
            )
        }),
    )
    .await?;

    let likes = copy(
        &mut tx,
        "COPY likes (photo_id, user_id, created_at) FROM STDIN",
        data.likes.iter().map(|&(u, p)| {
            format!(
                "{}\t{}\t{}",
                photo_id(p),
                user_id(u),
                data.photos[p].created_at
            )
        }),
    )
    .await?;

    for table in ["users", "photos"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // VACUUM as well as ANALYZE: freshly copied tables would otherwise
    // get an insert-triggered autovacuum a minute later, in the middle of
    // whatever is measured next. The checkpoint writes the copy out now,
    // not during the first measured steps; it needs a superuser (or
    // pg_checkpoint), so a database without one only loses that.
    sqlx::query("VACUUM (ANALYZE)").execute(pg).await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pg).await {
        eprintln!(
            "seed: no CHECKPOINT after the copy ({e}): the next one comes on its own schedule"
        );
    }
    Ok(ImportSummary {
        users,
        photos,
        follows,
        likes,
    })
}
