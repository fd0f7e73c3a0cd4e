-- Version 10: how the client authenticated when its grant was made (issue 19 review).

-- The client authentication method of the code exchange that made the grant: `none`,
-- `client_secret_basic`, `client_secret_post` or `private_key_jwt`. A refresh of the grant must
-- authenticate the same way (a key-authenticated grant is never refreshed with no key). NULL:
-- made before this was recorded (see oauth::grant_types::refresh_token).
ALTER TABLE grants ADD COLUMN auth_method TEXT;
