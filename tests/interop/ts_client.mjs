// The official TypeScript SDK client (@modelcontextprotocol/sdk 1.x) against an ezForge front door,
// starting from nothing but the MCP URL: 401, discovery (RFC 9728 + RFC 8414), dynamic client
// registration, PKCE, sign-in and consent through the real HTML forms (lib/browser.mjs), token
// exchange, tools/list and tools/call through the front door to the real upstream, a step-up
// (403 insufficient_scope, re-authorization with the added scope), and a refresh.
//
// Usage: node ts_client.mjs <mcp-url> <step-up-tool>
// Env: EZF_EMAIL, EZF_PASSWORD (the person who signs in).
// Prints `STEP <name>` lines as it goes and one `RESULT <json>` line at the end; exit 0 = passed.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { auth, UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { Browser, startCallbackServer } from "./lib/browser.mjs";

const [mcpUrl, stepUpTool] = process.argv.slice(2);
if (!mcpUrl || !stepUpTool) {
  console.error("usage: ts_client.mjs <mcp-url> <step-up-tool>");
  process.exit(2);
}
const person = { email: process.env.EZF_EMAIL, password: process.env.EZF_PASSWORD };
const step = (name, detail) => console.log(`STEP ${name}${detail ? " " + JSON.stringify(detail) : ""}`);

const callback = await startCallbackServer();
const browser = new Browser(new URL(mcpUrl).origin, person);

/** Every HTTP exchange the SDK makes: method, url, status, WWW-Authenticate, form grant type. */
const wire = [];
async function loggingFetch(input, init = {}) {
  const url = input instanceof Request ? input.url : String(input);
  const method = init.method ?? (input instanceof Request ? input.method : "GET");
  let grantType;
  if (init.body instanceof URLSearchParams) grantType = init.body.get("grant_type") ?? undefined;
  else if (typeof init.body === "string" && init.body.includes("grant_type=")) {
    grantType = new URLSearchParams(init.body).get("grant_type") ?? undefined;
  }
  const res = await fetch(input, init);
  wire.push({
    method,
    url,
    status: res.status,
    wwwAuthenticate: res.headers.get("www-authenticate") ?? undefined,
    grantType,
  });
  return res;
}

/** Authorization URLs the SDK sent the "user" to. */
const authorizations = [];

class Provider {
  constructor() {
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
    this._discovery = undefined;
    this.lastState = undefined;
  }
  get redirectUrl() {
    return callback.redirectUri;
  }
  get clientMetadata() {
    return {
      client_name: "ezForge interop (TypeScript SDK)",
      redirect_uris: [callback.redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    this.lastState = randomBytes(16).toString("base64url");
    return this.lastState;
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    return this._verifier;
  }
  saveDiscoveryState(s) {
    this._discovery = s;
  }
  discoveryState() {
    return this._discovery;
  }
  async redirectToAuthorization(url) {
    // A person's browser opens the page, signs in, consents, and lands on our redirect URI.
    authorizations.push(url.toString());
    await browser.authorize(url.toString());
  }
}

const provider = new Provider();

/** The code that the redirect URI received, after checking state and iss (RFC 9207). */
async function receivedCode(issuer) {
  const hit = await callback.next();
  assert.equal(hit.params.error, undefined, `authorization error: ${hit.url}`);
  assert.equal(hit.all.code?.length, 1, `one code: ${hit.url}`);
  assert.equal(hit.params.state, provider.lastState, "state comes back unchanged");
  assert.equal(hit.params.iss, issuer, "iss names the issuer");
  return hit.params.code;
}

const textOf = (result) => result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");
const scopeOf = (url) => new URL(url).searchParams.get("scope") ?? "";

// 1. Connect with nothing: the SDK gets a 401 and runs the whole authorization.
let transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: loggingFetch });
let client = new Client({ name: "ezforge-interop-ts", version: "1.0.0" });
try {
  await client.connect(transport);
  throw new Error("connected without authorization");
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
}
const first401 = wire.find((w) => w.status === 401);
assert.ok(first401, "the front door answered 401");
assert.match(first401.wwwAuthenticate ?? "", /resource_metadata="/, "401 names resource_metadata");
assert.ok(wire.some((w) => w.url.includes("/.well-known/oauth-protected-resource") && w.status === 200), "PRM discovered");
const asMeta = wire.find(
  (w) => (w.url.includes("/.well-known/oauth-authorization-server") || w.url.includes("/.well-known/openid-configuration")) && w.status === 200,
);
assert.ok(asMeta, "authorization server metadata discovered");
const registration = wire.find((w) => w.method === "POST" && w.url.endsWith("/register"));
assert.equal(registration?.status, 201, "dynamic client registration");
assert.equal(authorizations.length, 1, "one authorization");
const a1 = new URL(authorizations[0]);
assert.equal(a1.searchParams.get("code_challenge_method"), "S256");
assert.ok(a1.searchParams.get("code_challenge"), "PKCE challenge");
assert.equal(a1.searchParams.get("resource"), mcpUrl, "resource indicator is the MCP URL");
// The issuer the protected-resource metadata names (the server's own): RFC 9207's iss.
const prmUrl = /resource_metadata="([^"]+)"/.exec(first401.wwwAuthenticate)[1];
const issuer = (await (await fetch(prmUrl)).json()).authorization_servers[0];
assert.ok(a1.href.startsWith(`${issuer}/`), `authorized at the issuer's endpoint: ${a1.href}`);
step("authorized", { clientId: provider._client?.client_id, scope: scopeOf(authorizations[0]), logins: browser.logins, consents: browser.consents });
await transport.finishAuth(await receivedCode(issuer));
const firstTokens = provider.tokens();
assert.ok(firstTokens?.access_token, "an access token");
step("token", { scope: firstTokens.scope, refresh: Boolean(firstTokens.refresh_token) });

transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: loggingFetch });
client = new Client({ name: "ezforge-interop-ts", version: "1.0.0" });
await client.connect(transport);
step("connected", { server: client.getServerVersion(), protocol: transport.protocolVersion });

// 2. tools/list and a read-only tool through the front door.
const tools = await client.listTools();
const names = tools.tools.map((t) => t.name);
assert.ok(names.includes("echo") && names.includes(stepUpTool), `tools: ${names}`);
step("tools/list", { count: names.length });
const echoed = await client.callTool({ name: "echo", arguments: { message: "hello through ezForge" } });
assert.equal(echoed.isError ?? false, false, JSON.stringify(echoed));
assert.match(textOf(echoed), /hello through ezForge/);
step("tools/call echo", { text: textOf(echoed) });

// 3. Step-up: a tool that needs a scope the token lacks. The SDK gets 403 insufficient_scope and
// starts a new authorization with the scope the challenge names. SDK 1.x holding a refresh token
// refreshes instead (typescript-sdk #2255; 2.x re-authorizes, #2346): a refresh cannot widen the
// scope, the retry gets the same 403 and the SDK gives up. The application then re-authorizes
// with the challenged scope itself, as applications on SDK 1.x do.
const before = wire.length;
let stepUpBy = "sdk";
try {
  await client.callTool({ name: stepUpTool, arguments: { a: 2, b: 3 } });
  throw new Error(`${stepUpTool} succeeded with scope ${firstTokens.scope}`);
} catch (e) {
  if (e instanceof StreamableHTTPError && e.code === 403 && provider.tokens()?.refresh_token) {
    stepUpBy = "application";
    const challenged = /scope="([^"]+)"/.exec(wire.slice(before).find((w) => w.status === 403).wwwAuthenticate)[1];
    const { refresh_token: _dropped, ...withoutRefresh } = provider.tokens();
    provider.saveTokens(withoutRefresh);
    assert.equal(await auth(provider, { serverUrl: mcpUrl, scope: challenged, fetchFn: loggingFetch }), "REDIRECT");
  } else if (!(e instanceof UnauthorizedError)) {
    throw e;
  }
}
const forbidden = wire.slice(before).find((w) => w.status === 403);
assert.ok(forbidden, "the front door answered 403");
assert.match(forbidden.wwwAuthenticate ?? "", /error="insufficient_scope"/);
assert.equal(authorizations.length, 2, "a second authorization");
const stepUpScope = scopeOf(authorizations[1]);
step("step-up challenge", { wwwAuthenticate: forbidden.wwwAuthenticate, requestedScope: stepUpScope, by: stepUpBy });
await transport.finishAuth(await receivedCode(issuer));
const summed = await client.callTool({ name: stepUpTool, arguments: { a: 2, b: 3 } });
assert.match(textOf(summed), /5/, JSON.stringify(summed));
const stepped = provider.tokens();
assert.notEqual(stepped.access_token, firstTokens.access_token);
step("step-up success", { scope: stepped.scope, text: textOf(summed) });

// 4. Refresh. The SDK asks for exactly the scope in the challenge, never `offline_access`; it
// registered the refresh_token grant, so ezForge gave it a refresh token all the same.
const offline = provider.tokens();
assert.ok(offline.refresh_token, `a refresh token: ${JSON.stringify({ ...offline, access_token: "…" })}`);
step("refresh token", { scope: offline.scope });

// The access token stops being accepted (as when it expires): the SDK's transport gets 401,
// refreshes with the refresh token, and retries on its own.
provider.saveTokens({ ...offline, access_token: "expired-" + randomBytes(8).toString("hex") });
const beforeRefresh = wire.length;
const again = await client.callTool({ name: "echo", arguments: { message: "after refresh" } });
assert.match(textOf(again), /after refresh/);
const refreshCall = wire.slice(beforeRefresh).find((w) => w.grantType === "refresh_token");
assert.ok(refreshCall, "the SDK refreshed");
assert.equal(refreshCall.status, 200);
const refreshed = provider.tokens();
assert.notEqual(refreshed.refresh_token, offline.refresh_token, "refresh tokens rotate");
assert.equal(authorizations.length, 2, "no new authorization for a refresh");
step("refresh", { status: refreshCall.status });

await transport.terminateSession().catch(() => {});
await client.close();
callback.close();

console.log(
  "RESULT " +
    JSON.stringify({
      ok: true,
      clientId: provider._client.client_id,
      firstScope: firstTokens.scope,
      firstRefresh: Boolean(firstTokens.refresh_token),
      authorizationScopes: authorizations.map(scopeOf),
      stepUpChallenge: forbidden.wwwAuthenticate,
      stepUpBy,
      steppedScope: stepped.scope,
      refreshScope: offline.scope,
      refreshedAccessToken: refreshed.access_token,
      logins: browser.logins,
      consents: browser.consents,
      tools: names.length,
    }),
);
