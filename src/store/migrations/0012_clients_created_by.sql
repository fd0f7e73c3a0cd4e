-- Version 12: who made a project's credentials, so that they go when that person loses access.
--
-- A client registered through the control API (a pre-registration) now records its maker, as
-- an API key already does (`api_keys.created_by`). Removing a member from a project, or
-- deleting a user, removes the clients and keys they made there: they hold its secret, or
-- chose its redirect URIs. Dynamic clients (RFC 7591) have no maker.
ALTER TABLE oauth_clients ADD COLUMN created_by TEXT;

-- Clients registered before this version: their maker from the audit log (each registration
-- is recorded with the client's row id as its target; only sessions may register one). The
-- log is never pruned: an index for this one pass, dropped after it.
CREATE INDEX migration_12_audit ON audit_log(action, target);
UPDATE oauth_clients
SET created_by = (
    SELECT a.actor FROM audit_log a
    WHERE a.action = 'client.create' AND a.target = oauth_clients.id AND a.actor LIKE 'usr\_%' ESCAPE '\'
    ORDER BY a.id DESC LIMIT 1
)
WHERE is_dynamic = 0;
DROP INDEX migration_12_audit;

CREATE INDEX oauth_clients_created_by ON oauth_clients(created_by) WHERE created_by IS NOT NULL;
CREATE INDEX api_keys_created_by ON api_keys(created_by);

-- What people who left before this version made is removed now, as their leaving would remove
-- it from now on: keys (and the keys made with them) and clients whose maker is neither an
-- admin nor a member of the project any more (or no longer exists).
CREATE TEMP TABLE migration_12_keys AS
WITH RECURSIVE stale(id) AS (
    SELECT k.id FROM api_keys k
    WHERE k.created_by LIKE 'usr\_%' ESCAPE '\'
      AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = k.created_by AND u.role = 'admin')
      AND NOT EXISTS (SELECT 1 FROM project_members m
                      WHERE m.project_id = k.project_id AND m.user_id = k.created_by)
    UNION SELECT k.id FROM api_keys k JOIN stale s ON k.created_by = s.id
)
SELECT id FROM stale;

INSERT INTO audit_log (at, actor, action, target, project_id, details)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'api_key.revoke', k.id, k.project_id,
       '{"reason":"its maker left the project before version 12"}'
FROM api_keys k JOIN migration_12_keys s ON s.id = k.id;
DELETE FROM api_keys WHERE id IN (SELECT id FROM migration_12_keys);
DROP TABLE migration_12_keys;

CREATE TEMP TABLE migration_12_clients AS
SELECT c.id, c.client_id, c.server_id, s.project_id FROM oauth_clients c
JOIN servers s ON s.id = c.server_id
WHERE c.created_by IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = c.created_by AND u.role = 'admin')
  AND NOT EXISTS (SELECT 1 FROM project_members m
                  WHERE m.project_id = s.project_id AND m.user_id = c.created_by);

-- Their grants end, and their client_credentials tokens (which belong to no grant) are
-- refused by client, on record so that the front door loads both at start.
UPDATE grants SET revoked_at = CAST(strftime('%s', 'now') AS INTEGER)
WHERE revoked_at IS NULL
  AND EXISTS (SELECT 1 FROM migration_12_clients c
              WHERE c.client_id = grants.client_id AND c.server_id = grants.server_id);
INSERT INTO revocations (subject, kind, revoked_at)
SELECT client_id, 'client', CAST(strftime('%s', 'now') AS INTEGER) FROM migration_12_clients
WHERE true
ON CONFLICT (kind, subject) DO UPDATE SET revoked_at = excluded.revoked_at;
INSERT INTO audit_log (at, actor, action, target, project_id, details)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'client.delete', id, project_id,
       json_object('clientId', client_id, 'reason', 'its maker left the project before version 12')
FROM migration_12_clients;
DELETE FROM oauth_clients WHERE id IN (SELECT id FROM migration_12_clients);
DROP TABLE migration_12_clients;
