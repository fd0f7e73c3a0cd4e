-- Version 3: one row per request through the front door, written in batches.
CREATE TABLE request_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms        INTEGER NOT NULL,                 -- Unix milliseconds
    server_id    TEXT NOT NULL,
    subject      TEXT,
    client_id    TEXT,
    method       TEXT,                             -- JSON-RPC method (first of a batch)
    tool         TEXT,
    status       INTEGER NOT NULL,
    latency_ms   REAL NOT NULL,
    auth_failure TEXT,                             -- reason a token was refused
    request_id   TEXT
) STRICT;
CREATE INDEX request_log_server_time ON request_log(server_id, at_ms);
