-- Sessions do not pile up: expired ones are purged by a periodic
-- DELETE on expires_at, and each user keeps at most
-- auth::MAX_SESSIONS_PER_USER live sessions (a new sign-in drops the
-- oldest past that). Both look sessions up by these columns.
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX sessions_by_user ON sessions (user_id, expires_at);
