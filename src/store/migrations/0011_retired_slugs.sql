-- Version 11: what the review of issue 17 found (a deleted server's slug).

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
