-- Channels, DMs, memberships, messages and send idempotency keys.
CREATE TABLE conversations (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,           -- public | private | dm
    name       TEXT NOT NULL DEFAULT '',
    name_key   TEXT UNIQUE,             -- channels: case-folded name; DMs: NULL
    dm_key     TEXT UNIQUE,             -- DMs: sorted member IDs; channels: NULL
    archived   BOOLEAN NOT NULL DEFAULT FALSE,
    created_by TEXT NOT NULL,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE conversation_members (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    member_id       TEXT NOT NULL,
    role            TEXT NOT NULL,
    last_read_seq   BIGINT NOT NULL DEFAULT 0,
    joined_at       BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, member_id)
);
CREATE INDEX conversation_members_member ON conversation_members(member_id);

CREATE TABLE messages (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    sender_id       TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    edited_at       BIGINT NOT NULL DEFAULT 0,
    deleted_at      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE message_idempotency (
    sender_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (sender_id, conversation_id, client_id)
);
CREATE INDEX message_idempotency_created ON message_idempotency(created_at);

-- The default channel; every account joins it.
INSERT INTO conversations (id, kind, name, name_key, created_by, created_at, updated_at)
VALUES ('chn_general', 'public', 'general', 'general', '', 0, 0);
INSERT INTO conversation_members (conversation_id, member_id, role, joined_at)
SELECT 'chn_general', id, 'member', created_at FROM users;
