-- ezForge Server schema, version 1: accounts and signing keys.
-- Times are Unix seconds (INTEGER). Secrets are stored as SHA-256 hex or sealed with the master key.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,                -- usr_…
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT,                            -- argon2id PHC string; NULL until an invite is accepted
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,                -- RFC 7638 thumbprint
    alg           TEXT NOT NULL,
    private_key   TEXT NOT NULL,                   -- PKCS#8 DER sealed with the master key
    public_jwk    TEXT NOT NULL,                   -- JSON
    created_at    INTEGER NOT NULL,
    retired_at    INTEGER,                         -- NULL for the active key
    publish_until INTEGER                          -- retired keys stay in the JWKS until then
) STRICT;

CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
