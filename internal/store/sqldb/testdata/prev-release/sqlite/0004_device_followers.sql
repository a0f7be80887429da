-- Channels that follow a device: their members receive its state changes
-- and alerts live.
CREATE TABLE device_followers (
    device_id       TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (device_id, conversation_id)
);
CREATE INDEX device_followers_conversation ON device_followers(conversation_id);
