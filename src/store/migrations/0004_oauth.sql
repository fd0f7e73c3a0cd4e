-- Version 4: the authorization server's grants, codes, refresh tokens and consents.

ALTER TABLE oauth_clients ADD COLUMN registration_token_hash TEXT;
ALTER TABLE oauth_clients ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'none';
ALTER TABLE oauth_clients ADD COLUMN grant_types TEXT NOT NULL DEFAULT 'authorization_code refresh_token';
ALTER TABLE oauth_clients ADD COLUMN application_type TEXT NOT NULL DEFAULT 'web';
-- The metadata a dynamic client registered (RFC 7591), as JSON.
ALTER TABLE oauth_clients ADD COLUMN metadata TEXT;
UPDATE oauth_clients SET auth_method = 'client_secret_basic', grant_types = 'authorization_code refresh_token client_credentials'
    WHERE secret_hash IS NOT NULL;

-- One authorization: a user (or, for client_credentials, nobody) let a client reach a server.
CREATE TABLE grants (
    id           TEXT PRIMARY KEY,                 -- grt_…
    user_id      TEXT REFERENCES users(id) ON DELETE CASCADE,
    client_id    TEXT NOT NULL,                    -- the OAuth client_id (a metadata URL for CIMD clients)
    client_name  TEXT NOT NULL,
    server_id    TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    resource     TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;
CREATE INDEX grants_user ON grants(user_id);
CREATE INDEX grants_revoked ON grants(revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE auth_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    client_name    TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    server_id      TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    resource       TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    grant_id       TEXT                            -- set when exchanged
) STRICT;
CREATE INDEX auth_codes_expiry ON auth_codes(expires_at);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id   TEXT NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER                             -- set once used: any later use is a replay
) STRICT;
CREATE INDEX refresh_tokens_grant ON refresh_tokens(grant_id);

CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id, resource)
) STRICT;
