-- Version 11: what the review of issue 17 found (a deleted server's slug, trusted clients).

-- A deleted server's slug stays with its project. The slug makes the server's URL: the `aud`
-- of its tokens and of the X-Ezforge-Assertion its upstream checks, and the resource its
-- remembered consents name. Another project taking it would be handed that identity (an
-- upstream that outlived the server would take the new server's traffic for its own); the same
-- project may take it again. No foreign key: once its project is deleted the slug stays
-- retired for good.
CREATE TABLE retired_slugs (
    slug       TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,                      -- the project it stays with
    server_id  TEXT NOT NULL,                      -- the last server that had it
    retired_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Servers deleted before this version, from the audit log (each deletion is recorded with its
-- project and, in its details, its slug): the latest deletion of each slug no server has now.
WITH deleted AS (
    SELECT id, json_extract(details, '$.slug') AS slug, project_id, target, at
    FROM audit_log
    WHERE action = 'server.delete' AND project_id IS NOT NULL AND target IS NOT NULL
      AND json_valid(details)
),
latest AS (
    SELECT MAX(id) AS id FROM deleted WHERE typeof(slug) = 'text' GROUP BY slug
)
INSERT INTO retired_slugs (slug, project_id, server_id, retired_at)
SELECT d.slug, d.project_id, d.target, d.at
FROM deleted d JOIN latest l ON l.id = d.id
WHERE NOT EXISTS (SELECT 1 FROM servers s WHERE s.slug = d.slug);

-- Remembered consents name a server by its URL: those of servers deleted before this version
-- go (a deletion now takes them with it). A server's URL is `{public_url}/mcp/{slug}` or
-- `https://{slug}.{server_domain}`.
DELETE FROM consents WHERE NOT EXISTS (
    SELECT 1 FROM servers s
    WHERE substr(consents.resource, -(length(s.slug) + 5)) = '/mcp/' || s.slug
       OR substr(consents.resource, 1, length(s.slug) + 9) = 'https://' || s.slug || '.'
);

-- Trusted clients (consent skipped, for everyone) may be registered only by the project's
-- owners and instance admins since issue 17; before, any member could. A client keeps its
-- trust only where the audit log shows it was registered trusted by someone who is now an
-- instance admin or an owner of its server's project (who may do so today); every other
-- client loses it, which the audit log records (`client.untrust`, by `system`). An owner
-- registers such a client again to trust it.
CREATE TEMP TABLE untrusted AS
SELECT c.id, c.client_id, s.project_id
FROM oauth_clients c LEFT JOIN servers s ON s.id = c.server_id
WHERE c.trusted = 1 AND NOT EXISTS (
    SELECT 1 FROM audit_log a
    WHERE a.action = 'client.create' AND a.target = c.id AND a.project_id = s.project_id
      AND json_valid(a.details) AND json_extract(a.details, '$.trusted') = 1
      AND (EXISTS (SELECT 1 FROM users u WHERE u.id = a.actor AND u.role = 'admin')
           OR EXISTS (SELECT 1 FROM project_members m
                      WHERE m.project_id = s.project_id AND m.user_id = a.actor
                        AND m.role = 'owner'))
);
INSERT INTO audit_log (at, actor, action, target, project_id, address, details)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'client.untrust', id, project_id, NULL,
       json_object('clientId', client_id,
                   'reason', 'not registered trusted by a current owner or instance admin')
FROM untrusted;
UPDATE oauth_clients SET trusted = 0 WHERE id IN (SELECT id FROM untrusted);
DROP TABLE untrusted;
