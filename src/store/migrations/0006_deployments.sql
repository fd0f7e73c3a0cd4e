-- Version 6: deployments, process output and deployment events (the server log), and monthly
-- usage counters.
CREATE TABLE deployments (
    id            TEXT PRIMARY KEY,
    server_id     TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    label         TEXT,
    type          TEXT NOT NULL,                   -- deploy | rollback
    target        TEXT NOT NULL,                   -- JSON: {"upstreamUrl"} | {"command","transport","port"}
    status        TEXT NOT NULL,                   -- pending | building | running | failed | rolled_back
    active        INTEGER NOT NULL DEFAULT 0,      -- the one serving traffic
    error_message TEXT,
    env_sealed    TEXT,                            -- the server's env vars as deployed (sealed)
    created_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    UNIQUE (server_id, version)
) STRICT;

-- What a server's processes printed, and what its deployments did.
CREATE TABLE server_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms      INTEGER NOT NULL,
    server_id  TEXT NOT NULL,
    level      TEXT NOT NULL,                      -- debug | info | warn | error
    source     TEXT NOT NULL,                      -- process | deploy
    message    TEXT NOT NULL
) STRICT;
CREATE INDEX server_log_server_time ON server_log(server_id, at_ms);

-- Per server and calendar month (UTC, 'YYYY-MM'): survives log retention.
CREATE TABLE usage (
    month           TEXT NOT NULL,
    server_id       TEXT NOT NULL,
    project_id      TEXT NOT NULL,
    request_count   INTEGER NOT NULL DEFAULT 0,
    bandwidth_bytes INTEGER NOT NULL DEFAULT 0,
    compute_ms      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (month, server_id)
) STRICT;
