-- Version 7: revocations whose rows are deleted with what they revoke (a deleted server's or
-- user's grants, a deleted client), kept until every access token they cover has expired so
-- that a restart does not forget them.
CREATE TABLE revocations (
    subject    TEXT NOT NULL,                      -- a grant id, or an OAuth client_id
    kind       TEXT NOT NULL CHECK (kind IN ('grant', 'client')),
    revoked_at INTEGER NOT NULL,
    PRIMARY KEY (kind, subject)
) STRICT, WITHOUT ROWID;
CREATE INDEX revocations_at ON revocations(revoked_at);
