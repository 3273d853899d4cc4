-- At cutover, the legacy's live sessions are imported so that their tokens keep
-- working after the legacy database is left: the SHA-256 of the legacy access token
-- is kept here (the refresh token's hash goes to refresh_tokens as ours do).
ALTER TABLE sessions ADD COLUMN legacy_access_hash TEXT;
CREATE UNIQUE INDEX sessions_legacy_access_hash ON sessions (legacy_access_hash);
CREATE INDEX sessions_legacy_session_id ON sessions (legacy_session_id);
