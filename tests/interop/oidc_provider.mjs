// A real, certified OpenID provider (panva's `oidc-provider`) over https on 127.0.0.1, for the
// BYOA tests: resource indicators (RFC 8707) are on, so access tokens for an MCP server's URI are
// ES256 JWTs (typ at+jwt) whose `aud` is that URI; client_credentials is on for a confidential
// client, which keeps the tests free of interactive sign-in.
//
// Env:
//   TLS_CERT, TLS_KEY  PEM files (self-signed; tests trust the cert through outbound.ca_files)
//   KEYSTORE           JSON file holding the private signing keys (created when missing)
//   NEW_KEY            kid of a key to generate and sign with from now on (a rotation: older keys
//                      stay published after it)
//   PORT               port to listen on (0 = any free one)
//   CLIENT_ID, CLIENT_SECRET  the confidential client
// Prints `INTEROP_LISTENING <port>` on stderr once it serves.

import fs from "node:fs";
import https from "node:https";
import { generateKeyPairSync } from "node:crypto";
import Provider, { errors } from "oidc-provider";

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) {
    console.error(`${k} is not set`);
    process.exit(2);
  }
  return v;
};

let keys = fs.existsSync(env("KEYSTORE")) ? JSON.parse(fs.readFileSync(env("KEYSTORE"), "utf8")) : [];
if (process.env.NEW_KEY) {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...privateKey.export({ format: "jwk" }), kid: process.env.NEW_KEY, alg: "ES256", use: "sig" };
  keys = [jwk, ...keys.filter((k) => k.kid !== jwk.kid)];
  fs.writeFileSync(env("KEYSTORE"), JSON.stringify(keys));
}
if (!keys.length) {
  console.error("no signing key: set NEW_KEY");
  process.exit(2);
}

const MCP_SCOPES = "mcp:read mcp:write mcp:execute";
let provider;
const server = https.createServer(
  { cert: fs.readFileSync(env("TLS_CERT")), key: fs.readFileSync(env("TLS_KEY")) },
  (req, res) => provider.callback()(req, res),
);
server.listen({ port: Number(env("PORT")), host: "127.0.0.1" }, () => {
  const { port } = server.address();
  const issuer = `https://127.0.0.1:${port}`;
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: env("CLIENT_ID"),
        client_secret: env("CLIENT_SECRET"),
        grant_types: ["client_credentials"],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: "client_secret_basic",
        id_token_signed_response_alg: "ES256",
        scope: MCP_SCOPES,
      },
    ],
    jwks: { keys },
    scopes: ["openid", ...MCP_SCOPES.split(" ")],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          const u = new URL(resourceIndicator);
          if (u.protocol !== "http:" && u.protocol !== "https:") throw new errors.InvalidTarget();
          return {
            scope: MCP_SCOPES,
            audience: resourceIndicator,
            accessTokenTTL: 600,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg: "ES256" } },
          };
        },
      },
    },
  });
  process.stderr.write(`INTEROP_LISTENING ${port}\n`);
});
