-- Progress and switches of the migration from the legacy database: the backfill's
-- checkpoint, the sync watermark, the cutover.
CREATE TABLE migration_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The legacy's password digest of each imported member as last seen: a changed digest
-- means the password changed on the legacy; an unchanged one lets the identity
-- service keep its own re-hash (argon2id) of the same password.
CREATE TABLE legacy_digests (
    member_id BIGINT PRIMARY KEY,
    digest TEXT NOT NULL
);
