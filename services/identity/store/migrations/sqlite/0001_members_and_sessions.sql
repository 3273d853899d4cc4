-- Members, sessions and the log-in throttle. Times are microseconds since the epoch (UTC).
CREATE TABLE members (
    id INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id > 0 AND id < 9007199254740992),
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    nickname TEXT NOT NULL,
    phone_number TEXT,
    profile_image_url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX members_email_key ON members (email);
CREATE UNIQUE INDEX members_phone_number_key ON members (phone_number);
CREATE INDEX members_updated_at_idx ON members (updated_at);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    member_id BIGINT NOT NULL REFERENCES members (id),
    access_jti TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    access_expires_at BIGINT NOT NULL,
    refresh_expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT
);
CREATE INDEX sessions_member_id_idx ON sessions (member_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    issued_at BIGINT NOT NULL,
    rotated_at BIGINT
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE login_failures (
    bucket TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);

CREATE TABLE known_clients (
    member_id BIGINT NOT NULL,
    client TEXT NOT NULL,
    last_success_at BIGINT NOT NULL,
    PRIMARY KEY (member_id, client)
);
