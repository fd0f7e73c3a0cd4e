-- Version 12: who made a project's credentials, so that they go when that person loses access.
--
-- A client registered through the control API (a pre-registration) now records its maker, as
-- an API key already does (`api_keys.created_by`). Removing a member from a project, or
-- deleting a user, removes the clients and keys they made there: they hold its secret, or
-- chose its redirect URIs. Dynamic clients (RFC 7591) have no maker.
ALTER TABLE oauth_clients ADD COLUMN created_by TEXT;

-- Clients registered before this version: their maker from the audit log (each registration
-- is recorded with the client's row id as its target; only sessions may register one).
UPDATE oauth_clients
SET created_by = (
    SELECT a.actor FROM audit_log a
    WHERE a.action = 'client.create' AND a.target = oauth_clients.id AND a.actor LIKE 'usr\_%' ESCAPE '\'
    ORDER BY a.id DESC LIMIT 1
)
WHERE is_dynamic = 0;

CREATE INDEX oauth_clients_created_by ON oauth_clients(created_by) WHERE created_by IS NOT NULL;
CREATE INDEX api_keys_created_by ON api_keys(created_by);
