-- Version 2: the control API's objects.

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,                   -- SHA-256 hex of the ezf_sess_ token
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE invites (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE projects (
    id         TEXT PRIMARY KEY,                   -- proj_…
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL UNIQUE,
    managed_by TEXT NOT NULL DEFAULT 'api' CHECK (managed_by IN ('api', 'config')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id)
) STRICT;
CREATE INDEX project_members_user ON project_members(user_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,                 -- key_…
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,                    -- the first characters, for recognising a key
    key_hash     TEXT NOT NULL UNIQUE,             -- SHA-256 hex of the whole key
    scopes       TEXT NOT NULL,                    -- space-separated
    environment  TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER
) STRICT;
CREATE INDEX api_keys_project ON api_keys(project_id);

CREATE TABLE servers (
    id                        TEXT PRIMARY KEY,    -- srv_…
    project_id                TEXT NOT NULL REFERENCES projects(id),
    name                      TEXT NOT NULL,
    slug                      TEXT NOT NULL UNIQUE,
    status                    TEXT NOT NULL,
    upstream_url              TEXT,
    health_check_path         TEXT,
    rollback_on_failure       INTEGER NOT NULL DEFAULT 1,
    retention_count           INTEGER NOT NULL DEFAULT 10,
    auto_stop_seconds         INTEGER,
    tool_scopes               TEXT NOT NULL DEFAULT '{}',   -- JSON object: tool name -> scope
    auth_mode                 TEXT NOT NULL CHECK (auth_mode IN ('ezforge_managed', 'byoa')),
    byoa_config               TEXT,                         -- JSON; NULL = the deployment's default
    managed_by                TEXT NOT NULL DEFAULT 'api' CHECK (managed_by IN ('api', 'config')),
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL
) STRICT;
CREATE INDEX servers_project ON servers(project_id);

CREATE TABLE oauth_clients (
    id                   TEXT PRIMARY KEY,         -- oac_…
    client_id            TEXT NOT NULL UNIQUE,     -- client_… or a metadata document URL
    server_id            TEXT REFERENCES servers(id) ON DELETE CASCADE,  -- NULL: dynamic, any server
    name                 TEXT NOT NULL,
    redirect_uris        TEXT NOT NULL,            -- JSON array
    scopes               TEXT NOT NULL,            -- space-separated
    trusted              INTEGER NOT NULL DEFAULT 0,
    is_dynamic           INTEGER NOT NULL DEFAULT 0,
    secret_hash          TEXT,                     -- confidential clients only
    metadata_url         TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    last_used_at         INTEGER
) STRICT;
CREATE INDEX oauth_clients_server ON oauth_clients(server_id);

CREATE TABLE env_vars (
    id         TEXT PRIMARY KEY,                   -- env_…
    server_id  TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,                      -- sealed with the master key
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (server_id, name)
) STRICT;

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,                      -- usr_…, key_…, or "system"
    action     TEXT NOT NULL,                      -- e.g. server.create
    target     TEXT,
    project_id TEXT,
    address    TEXT,
    details    TEXT                                -- JSON, never secrets
) STRICT;
CREATE INDEX audit_log_project ON audit_log(project_id);
