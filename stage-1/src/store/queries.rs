//! Stage 1's SQL: one function per use case of the `Store` trait, each
//! run on a read connection or inside the writer's transaction by
//! [`super::gates`]. Plain functions of a `Connection`, so a reader sees
//! the whole query of a use case in one place.

use minigram::domain::{Email, PageQuery, PhotoId, UserId, Username};
use minigram::store::{
    Credentials, FollowState, Integrity, LikeState, MyProfile, NewPhoto, NewSession, NewUser,
    Photo, PhotoPage, PhotoStatus, SessionUser, StoreError, UserProfile,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::gates::{WriteError, is_unique_violation};

pub fn integrity(c: &Connection) -> rusqlite::Result<Integrity> {
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
    let mut problems: Vec<String> = c
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|line| line != "ok")
        .map(|line| format!("sqlite integrity_check: {line}"))
        .collect();
    let dangling = count("SELECT COUNT(*) FROM pragma_foreign_key_check")?;
    if dangling > 0 {
        problems.push(format!("{dangling} rows point to missing rows"));
    }
    let wrong = count(minigram::store::LIKE_COUNT_MISMATCHES)?;
    if wrong > 0 {
        problems.push(format!(
            "{wrong} photos' like_count differs from their like rows"
        ));
    }
    let files = c
        .prepare("SELECT DISTINCT file_name FROM photos")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Integrity {
        users: count("SELECT COUNT(*) FROM users")?,
        photos: count("SELECT COUNT(*) FROM photos")?,
        likes: count("SELECT COUNT(*) FROM likes")?,
        follows: count("SELECT COUNT(*) FROM follows")?,
        problems,
        files,
    })
}

pub fn is_empty(c: &Connection) -> rusqlite::Result<bool> {
    c.query_row("SELECT NOT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))
}

pub fn create_user(tx: &Connection, user: NewUser) -> Result<UserId, WriteError> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO users (username, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            user.username.as_str(),
            user.email.as_ref().map(Email::as_str),
            user.password_hash,
            now_ms()
        ]);
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(WriteError::Store(StoreError::UsernameTaken));
        }
        other => other?,
    };
    Ok(UserId(tx.last_insert_rowid()))
}

pub fn credentials_for(c: &Connection, username: &str) -> rusqlite::Result<Option<Credentials>> {
    c.prepare_cached("SELECT id, username, password_hash FROM users WHERE username = ?1")?
        .query_row([username], |r| {
            Ok(Credentials {
                user_id: UserId(r.get(0)?),
                username: Username::from_trusted(r.get(1)?),
                password_hash: r.get(2)?,
            })
        })
        .optional()
}

pub fn create_session(conn: &Connection, session: &NewSession) -> Result<(), WriteError> {
    conn.prepare_cached(
        "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        &session.token_hash[..],
        session.user.user_id.0,
        session.expires_at
    ])?;
    // At most MAX_SESSIONS_PER_USER per user: the oldest go first.
    conn.prepare_cached(
        "DELETE FROM sessions WHERE user_id = ?1 AND token_hash IN (
             SELECT token_hash FROM sessions WHERE user_id = ?1
             ORDER BY expires_at DESC LIMIT -1 OFFSET ?2)",
    )?
    .execute(params![
        session.user.user_id.0,
        minigram::auth::MAX_SESSIONS_PER_USER
    ])?;
    Ok(())
}

pub fn purge_expired_sessions(conn: &Connection, now: i64) -> Result<u64, WriteError> {
    let n = conn
        .prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?
        .execute([now])?;
    Ok(n as u64)
}

pub fn session_user(
    c: &Connection,
    token_hash: &[u8; 32],
    now: i64,
) -> rusqlite::Result<Option<SessionUser>> {
    c.prepare_cached(
        "SELECT s.user_id, u.username FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ?1 AND s.expires_at > ?2",
    )?
    .query_row(params![&token_hash[..], now], |r| {
        Ok(SessionUser {
            user_id: UserId(r.get(0)?),
            username: Username::from_trusted(r.get(1)?),
        })
    })
    .optional()
}

pub fn revoke_session(conn: &Connection, token_hash: &[u8; 32]) -> Result<bool, WriteError> {
    let n = conn
        .prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
        .execute([&token_hash[..]])?;
    Ok(n > 0)
}

pub fn profile(
    conn: &Connection,
    viewer: Option<UserId>,
    user: UserId,
) -> rusqlite::Result<Option<UserProfile>> {
    conn.prepare_cached(
        "SELECT u.id, u.username,
                (SELECT COUNT(*) FROM follows WHERE followee_id = u.id),
                (SELECT COUNT(*) FROM follows WHERE follower_id = u.id),
                (SELECT COUNT(*) FROM photos WHERE user_id = u.id),
                EXISTS (SELECT 1 FROM follows WHERE follower_id = ?2 AND followee_id = u.id)
         FROM users u WHERE u.id = ?1",
    )?
    .query_row(params![user.0, viewer.map_or(0, |v| v.0)], |r| {
        Ok(UserProfile {
            id: UserId(r.get(0)?),
            username: Username::from_trusted(r.get(1)?),
            followers: r.get(2)?,
            following: r.get(3)?,
            photos: r.get(4)?,
            followed_by_me: r.get(5)?,
        })
    })
    .optional()
}

pub fn my_profile(c: &Connection, me: UserId) -> rusqlite::Result<Option<MyProfile>> {
    let Some(p) = profile(c, None, me)? else {
        return Ok(None);
    };
    let email: Option<String> = c
        .prepare_cached("SELECT email FROM users WHERE id = ?1")?
        .query_row([me.0], |r| r.get(0))?;
    Ok(Some(MyProfile {
        profile: p,
        email: email.map(Email::from_trusted),
    }))
}

pub fn set_follow(
    tx: &Connection,
    follower: UserId,
    followee: UserId,
    on: bool,
) -> Result<FollowState, WriteError> {
    if !exists(tx, "SELECT 1 FROM users WHERE id = ?1", followee.0)? {
        return Err(WriteError::Store(StoreError::NotFound));
    }
    if on {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO follows (follower_id, followee_id, created_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![follower.0, followee.0, now_ms()])?;
    } else {
        tx.prepare_cached("DELETE FROM follows WHERE follower_id = ?1 AND followee_id = ?2")?
            .execute(params![follower.0, followee.0])?;
    }
    let followers: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM follows WHERE followee_id = ?1")?
        .query_row([followee.0], |r| r.get(0))?;
    Ok(FollowState {
        following: on,
        followers,
    })
}

pub fn insert_photo(tx: &Connection, photo: NewPhoto) -> Result<Photo, WriteError> {
    let created_at = now_ms();
    let username: String = tx
        .prepare_cached("SELECT username FROM users WHERE id = ?1")?
        .query_row([photo.user_id.0], |r| r.get(0))
        .optional()?
        .ok_or(WriteError::Store(StoreError::NotFound))?;
    tx.prepare_cached(
        "INSERT INTO photos (user_id, caption, file_name, width, height, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        photo.user_id.0,
        photo.caption.as_str(),
        photo.file_name,
        photo.width,
        photo.height,
        created_at
    ])?;
    // Stage 1 processes every upload in its request: `photo.status` is
    // always `Ready` here.
    Ok(photo.stored(PhotoId(tx.last_insert_rowid()), username, created_at))
}

pub fn photo(
    c: &Connection,
    viewer: Option<UserId>,
    photo: PhotoId,
) -> rusqlite::Result<Option<Photo>> {
    c.prepare_cached(&format!(
        "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id WHERE p.id = ?2"
    ))?
    .query_row(params![viewer.map_or(0, |v| v.0), photo.0], photo_row)
    .optional()
}

pub fn set_like(
    tx: &Connection,
    user: UserId,
    photo: PhotoId,
    on: bool,
) -> Result<LikeState, WriteError> {
    if !exists(tx, "SELECT 1 FROM photos WHERE id = ?1", photo.0)? {
        return Err(WriteError::Store(StoreError::NotFound));
    }
    let changed = if on {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO likes (photo_id, user_id, created_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![photo.0, user.0, now_ms()])?
    } else {
        tx.prepare_cached("DELETE FROM likes WHERE photo_id = ?1 AND user_id = ?2")?
            .execute(params![photo.0, user.0])?
    };
    if changed > 0 {
        let delta = if on { 1 } else { -1 };
        tx.prepare_cached("UPDATE photos SET like_count = like_count + ?2 WHERE id = ?1")?
            .execute(params![photo.0, delta])?;
    }
    let like_count: i64 = tx
        .prepare_cached("SELECT like_count FROM photos WHERE id = ?1")?
        .query_row([photo.0], |r| r.get(0))?;
    Ok(LikeState {
        liked: on,
        like_count,
    })
}

pub fn feed(c: &Connection, viewer: UserId, page: PageQuery) -> rusqlite::Result<PhotoPage> {
    photo_page(
        c,
        &format!(
            "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
             WHERE p.user_id IN (SELECT followee_id FROM follows WHERE follower_id = ?1
                                 UNION ALL SELECT ?1)
               AND p.id < ?2
             ORDER BY p.id DESC LIMIT ?3"
        ),
        Some(viewer),
        page,
        None,
    )
}

pub fn explore(
    c: &Connection,
    viewer: Option<UserId>,
    page: PageQuery,
) -> rusqlite::Result<PhotoPage> {
    photo_page(
        c,
        &format!(
            "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
             WHERE p.id < ?2 ORDER BY p.id DESC LIMIT ?3"
        ),
        viewer,
        page,
        None,
    )
}

pub fn user_photos(
    c: &Connection,
    viewer: Option<UserId>,
    owner: UserId,
    page: PageQuery,
) -> rusqlite::Result<Option<PhotoPage>> {
    if !exists(c, "SELECT 1 FROM users WHERE id = ?1", owner.0)? {
        return Ok(None);
    }
    photo_page(
        c,
        &format!(
            "SELECT {PHOTO_COLUMNS} FROM photos p JOIN users u ON u.id = p.user_id
             WHERE p.user_id = ?4 AND p.id < ?2 ORDER BY p.id DESC LIMIT ?3"
        ),
        viewer,
        page,
        Some(owner.0),
    )
    .map(Some)
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The columns of a `Photo`, for `p` joined with its owner `u`; `?1` is
/// the viewer (0 when anonymous: no user has id 0).
const PHOTO_COLUMNS: &str = "p.id, p.user_id, u.username, p.caption, p.file_name, p.width, \
     p.height, p.created_at, p.like_count, \
     EXISTS (SELECT 1 FROM likes l WHERE l.photo_id = p.id AND l.user_id = ?1)";

fn photo_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Photo> {
    let file_name: String = r.get(4)?;
    Ok(Photo {
        id: PhotoId(r.get(0)?),
        user_id: UserId(r.get(1)?),
        username: r.get(2)?,
        caption: r.get(3)?,
        url: Photo::url_for(&file_name),
        width: r.get(5)?,
        height: r.get(6)?,
        created_at: r.get(7)?,
        like_count: r.get(8)?,
        liked_by_me: r.get(9)?,
        // Stage 1 processes every upload in its request: always ready.
        status: PhotoStatus::Ready,
    })
}

/// Runs a page query whose parameters are (viewer, before, limit + 1, extra...).
fn photo_page(
    conn: &Connection,
    sql: &str,
    viewer: Option<UserId>,
    page: PageQuery,
    extra: Option<i64>,
) -> rusqlite::Result<PhotoPage> {
    let mut stmt = conn.prepare_cached(sql)?;
    let before = page.before.map_or(i64::MAX, |c| c.0.0);
    let fetch = i64::from(page.limit.get()) + 1;
    let viewer = viewer.map_or(0, |v| v.0);
    let rows = match extra {
        Some(x) => stmt
            .query_map(params![viewer, before, fetch, x], photo_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => stmt
            .query_map(params![viewer, before, fetch], photo_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(PhotoPage::from_rows(rows, page))
}

fn exists(conn: &Connection, sql: &str, id: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}
