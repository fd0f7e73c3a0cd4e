-- Version 9: what the MCP clients people use need (issue 19).

-- OpenID Connect: the ID token of a code carries the request's nonce and when the user signed in.
ALTER TABLE auth_codes ADD COLUMN nonce TEXT;
ALTER TABLE auth_codes ADD COLUMN auth_time INTEGER;

-- private_key_jwt (RFC 7523): every client assertion's `jti` is single-use. Kept until the
-- assertion expires, so that a restart does not make a still-valid assertion usable again.
CREATE TABLE client_assertions (
    jti_hash   TEXT PRIMARY KEY,                   -- SHA-256 of the client_id and the jti
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX client_assertions_expiry ON client_assertions(expires_at);
