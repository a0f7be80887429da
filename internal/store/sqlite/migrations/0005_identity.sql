-- Session epochs: every access token carries its user's epoch; bumping it
-- ends every session. identity_events tells every node (and a server whose
-- database the command line changed) which identities changed.
ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;

CREATE TABLE identity_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX identity_events_at ON identity_events(at);

-- Confusable skeletons (UTS #39) of every name shown to people, users and
-- devices alike: no two may look the same.
CREATE TABLE name_skeletons (
    skeleton TEXT PRIMARY KEY,
    identity TEXT NOT NULL
);
CREATE INDEX name_skeletons_identity ON name_skeletons(identity);

-- Devices may DM people only when their owner allows it.
ALTER TABLE devices ADD COLUMN may_dm_people INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN name_skeleton TEXT NOT NULL DEFAULT '';
CREATE INDEX devices_skeleton ON devices(name_skeleton);
