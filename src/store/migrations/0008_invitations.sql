-- Version 8: project membership by invitation; and why the front door refused a request.

CREATE TABLE project_invitations (
    id         TEXT PRIMARY KEY,                   -- inv_…
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    email      TEXT NOT NULL COLLATE NOCASE,       -- whoever has (or makes) the account with it
    role       TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    token_hash TEXT NOT NULL UNIQUE,               -- SHA-256 hex of the ezf_inv_ token
    invited_by TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    UNIQUE (project_id, email)
) STRICT;
CREATE INDEX project_invitations_email ON project_invitations(email);

-- The front door's own refusals (a body that is not JSON-RPC, a header that contradicts the
-- body, an unknown session): a reason code and what was wrong.
ALTER TABLE request_log ADD COLUMN refusal TEXT;
