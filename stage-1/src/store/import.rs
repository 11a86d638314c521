//! Loading a generated dataset (`stage-1 seed`): one transaction on the
//! bare write connection, between the writer's groups.

use minigram::store::{Dataset, ImportSummary};
use rusqlite::{Connection, TransactionBehavior, params};

/// One transaction, prepared statements, ids captured as rows go in.
pub fn import(conn: &mut Connection, data: &Dataset) -> rusqlite::Result<ImportSummary> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut user_ids = Vec::with_capacity(data.users.len());
    {
        let mut stmt = tx.prepare(
            "INSERT INTO users (username, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for u in &data.users {
            stmt.execute(params![u.username, u.email, u.password_hash, u.created_at])?;
            user_ids.push(tx.last_insert_rowid());
        }
    }
    let mut like_counts = vec![0i64; data.photos.len()];
    for &(_, photo) in &data.likes {
        like_counts[photo] += 1;
    }
    let mut photo_ids = Vec::with_capacity(data.photos.len());
    {
        let mut stmt = tx.prepare(
            "INSERT INTO photos (user_id, caption, file_name, width, height, created_at, like_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (p, likes) in data.photos.iter().zip(&like_counts) {
            stmt.execute(params![
                user_ids[p.user],
                p.caption,
                p.file_name,
                p.width,
                p.height,
                p.created_at,
                likes
            ])?;
            photo_ids.push(tx.last_insert_rowid());
        }
    }
    {
        let mut stmt = tx.prepare(
            "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?1, ?2, ?3)",
        )?;
        for &(a, b) in &data.follows {
            stmt.execute(params![user_ids[a], user_ids[b], data.users[a].created_at])?;
        }
    }
    {
        let mut stmt =
            tx.prepare("INSERT INTO likes (photo_id, user_id, created_at) VALUES (?1, ?2, ?3)")?;
        for &(u, p) in &data.likes {
            stmt.execute(params![
                photo_ids[p],
                user_ids[u],
                data.photos[p].created_at
            ])?;
        }
    }
    tx.commit()?;
    conn.execute_batch("ANALYZE")?;
    Ok(ImportSummary {
        users: user_ids.len() as u64,
        photos: photo_ids.len() as u64,
        follows: data.follows.len() as u64,
        likes: data.likes.len() as u64,
    })
}
