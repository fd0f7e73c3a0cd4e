-- Version 5: a per-server rate limit for the front door (JSON {"per_minute","burst"}; NULL =
-- the deployment's [gateway.rate_limit]).
ALTER TABLE servers ADD COLUMN rate_limit TEXT;
