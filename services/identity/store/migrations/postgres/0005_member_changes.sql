-- The change log other services follow (WatchMemberChanges): one row per change of a
-- member (created, updated, withdrawn), numbered in commit order. The number comes
-- from the one row of member_change_counter, taken as a writing transaction's last
-- statement: its lock, held until that transaction commits, makes the next writer
-- take the next number only then, so numbers are never skipped and never seen out of
-- order (a rolled-back writer gives its number back).
CREATE TABLE member_change_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
INSERT INTO member_change_counter (id, last_seq) VALUES (1, 0);
CREATE TABLE member_changes (
    seq BIGINT PRIMARY KEY,
    member_id BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'withdrawn')),
    changed_at BIGINT NOT NULL
);
CREATE INDEX member_changes_changed_at ON member_changes (changed_at);
