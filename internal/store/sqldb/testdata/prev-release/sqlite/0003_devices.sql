-- Devices, their health, free-heap series, telemetry and commands.
CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    owner_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    type            TEXT NOT NULL,
    capabilities    TEXT NOT NULL DEFAULT '{}',
    key_id          TEXT NOT NULL UNIQUE,
    key_hash        TEXT NOT NULL,
    key_created_at  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER NOT NULL DEFAULT 0,
    changed_at      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL DEFAULT 0,
    connected_since INTEGER NOT NULL DEFAULT 0,
    reboots         INTEGER NOT NULL DEFAULT 0,
    free_heap       INTEGER NOT NULL DEFAULT 0,
    uptime          REAL NOT NULL DEFAULT 0
);
CREATE INDEX devices_owner ON devices(owner_id);
CREATE INDEX devices_changed ON devices(changed_at);

CREATE TABLE device_heap (
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    res       INTEGER NOT NULL,
    start     INTEGER NOT NULL,
    min       INTEGER NOT NULL,
    max       INTEGER NOT NULL,
    sum       INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (device_id, res, start)
);
CREATE INDEX device_heap_age ON device_heap(res, start);

CREATE TABLE device_telemetry (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,
    readings  TEXT NOT NULL
);
CREATE INDEX device_telemetry_device ON device_telemetry(device_id, id);

CREATE TABLE device_commands (
    id           TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    type         TEXT NOT NULL,
    command      TEXT NOT NULL,
    params       TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL,
    created_by   TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL DEFAULT 0,
    answered_at  INTEGER NOT NULL DEFAULT 0,
    result       TEXT NOT NULL DEFAULT '',
    error        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX device_commands_device ON device_commands(device_id, status);
CREATE INDEX device_commands_expiry ON device_commands(status, expires_at);

CREATE INDEX audit_log_target ON audit_log(target);
