-- While migrating, each session also has a row in the legacy's `sessions` table (so
-- that the legacy accepts its tokens); its id is kept here to end it there too.
ALTER TABLE sessions ADD COLUMN legacy_session_id BIGINT;
