-- Minigram, stage 1: the whole schema in one SQLite file.
-- Applied once at start (PRAGMA user_version records what ran).
-- Times are unix milliseconds (sessions: unix seconds).

-- People. Usernames are unique regardless of case ("Bob" blocks "bob"),
-- enforced by the UNIQUE index so concurrent registrations cannot race.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    email         TEXT,
    -- Argon2id PHC string; the password itself is never stored.
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- Signed-in sessions. Only the SHA-256 of a token is kept, so a copy of
-- this file does not let anyone sign in. Logout deletes the row.
CREATE TABLE sessions (
    token_hash BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Photos. The id grows with time, so "newest first" is "id descending" and
-- the id is the pagination cursor. like_count is kept in the row (updated
-- in the same transaction as the like) so a feed page does not count likes.
CREATE TABLE photos (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    caption    TEXT    NOT NULL,
    -- <sha256>.jpg under the uploads directory
    file_name  TEXT    NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    like_count INTEGER NOT NULL DEFAULT 0 CHECK (like_count >= 0)
);

-- The feed and profile index: one user's photos, newest first. Without it
-- a feed page scans every photo (the index-impact experiment measures it).
CREATE INDEX photos_by_user ON photos (user_id, id);

-- Who follows whom. The primary key answers "whom does X follow" (the feed)
-- and makes a follow idempotent; the second index answers "who follows X"
-- (follower counts).
CREATE TABLE follows (
    follower_id INTEGER NOT NULL REFERENCES users (id),
    followee_id INTEGER NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
) WITHOUT ROWID;
CREATE INDEX follows_by_followee ON follows (followee_id, follower_id);

-- Likes: the primary key makes a like idempotent and answers "did I like
-- this photo" for every photo of a page with one index probe.
CREATE TABLE likes (
    photo_id   INTEGER NOT NULL REFERENCES photos (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (photo_id, user_id)
) WITHOUT ROWID;
