"""The official Python SDK client (PyPI `mcp` 2.x) against an ezForge front door, starting from
nothing but the MCP URL: 401, discovery, dynamic client registration, PKCE, sign-in and consent
through the real HTML forms (a small browser below), token exchange, tools/list and tools/call
through the front door to the real upstream, a step-up (403 insufficient_scope, re-authorization
with the added scope) and a refresh.

Usage: python py_client.py <mcp-url> <step-up-tool>
Env: EZF_EMAIL, EZF_PASSWORD. Prints `STEP` lines and one `RESULT <json>` line; exit 0 = passed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import types
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken


def step(name: str, detail: object | None = None) -> None:
    print(f"STEP {name}" + (f" {json.dumps(detail)}" if detail is not None else ""), flush=True)


class FormParser(HTMLParser):
    """Collects <form>s: method, action, named inputs and named buttons."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._open = {"method": a.get("method", "get").lower(), "action": a.get("action"), "inputs": [], "buttons": []}
            self.forms.append(self._open)
        elif self._open is not None and tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind == "submit":
                self._open["buttons"].append((a["name"], a.get("value", "")))
            else:
                self._open["inputs"].append((a["name"], a.get("value", ""), kind))
        elif self._open is not None and tag == "button" and a.get("name"):
            self._open["buttons"].append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


class Browser:
    """Keeps cookies, fills the login form, approves the consent form, follows the redirect to the
    client's loopback redirect URI. Everything a person's browser does, without JavaScript."""

    def __init__(self, origin: str, email: str, password: str) -> None:
        self.origin = origin
        self.email, self.password = email, password
        self.http = httpx2.AsyncClient(follow_redirects=False, timeout=30)
        self.logins = 0
        self.consents = 0

    def _on_server(self, url: str) -> bool:
        u, o = urlparse(url), urlparse(self.origin)
        return (u.scheme, u.netloc) == (o.scheme, o.netloc)

    async def authorize(self, url: str) -> str:
        page = await self.http.get(url, headers={"accept": "text/html"})
        for _ in range(12):
            if 300 <= page.status_code < 400:
                nxt = urljoin(str(page.url), page.headers["location"])
                if self._on_server(nxt):
                    page = await self.http.get(nxt, headers={"accept": "text/html"})
                    continue
                landed = await self.http.get(nxt)  # the redirect URI: our callback server
                assert landed.status_code == 200, f"redirect URI answered {landed.status_code}"
                return nxt
            assert page.status_code == 200, f"authorization stopped at {page.status_code} {page.url}: {page.text[:800]}"
            parser = FormParser()
            parser.feed(page.text)
            posts = [f for f in parser.forms if f["method"] == "post"]
            login = next((f for f in posts if any(n == "password" for n, _, _ in f["inputs"])), None)
            consent = next((f for f in posts if any(n == "decision" for n, _ in f["buttons"])), None)
            form = login or consent
            assert form is not None, f"no login or consent form at {page.url}: {page.text[:800]}"
            fields = {n: v for n, v, kind in form["inputs"] if kind not in ("checkbox", "radio")}
            assert fields.get("csrf"), f"no CSRF token in the form at {page.url}"
            if login is not None:
                self.logins += 1
                assert self.logins <= 3, f"login refused: {page.text[:800]}"
                fields["email"], fields["password"] = self.email, self.password
            else:
                self.consents += 1
                fields["decision"] = "approve"
            action = urljoin(str(page.url), form["action"] or str(page.url))
            page = await self.http.post(action, data=fields, headers={"accept": "text/html", "origin": self.origin})
        raise AssertionError("too many hops in the authorization flow")


class CallbackServer:
    """A loopback HTTP server for the redirect URI; queues the query of every /callback hit."""

    def __init__(self) -> None:
        self.hits: asyncio.Queue[dict[str, list[str]]] = asyncio.Queue()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/callback"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        target = line.split(" ")[1] if line.count(" ") >= 2 else "/"
        parsed = urlparse(target)
        status = "200 OK" if parsed.path == "/callback" else "404 Not Found"
        if parsed.path == "/callback":
            await self.hits.put(parse_qs(parsed.query))
        body = b"Signed in. You can close this page."
        writer.write(f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def main(mcp_url: str, step_up_tool: str) -> None:
    origin = f"{urlparse(mcp_url).scheme}://{urlparse(mcp_url).netloc}"
    browser = Browser(origin, os.environ["EZF_EMAIL"], os.environ["EZF_PASSWORD"])
    callback = CallbackServer()
    redirect_uri = await callback.start()
    storage = MemoryStorage()
    authorizations: list[str] = []
    wire: list[dict] = []

    async def redirect_handler(url: str) -> None:
        authorizations.append(url)
        await browser.authorize(url)

    async def callback_handler() -> AuthorizationCodeResult:
        q = await callback.hits.get()
        assert "error" not in q, f"authorization error: {q}"
        assert len(q.get("code", [])) == 1, f"one code: {q}"
        return AuthorizationCodeResult(code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0])

    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="ezForge interop (Python SDK)",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )

    async def log_response(response: httpx2.Response) -> None:
        req = response.request
        grant = None
        if req.method == "POST" and req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            grant = parse_qs(req.content.decode()).get("grant_type", [None])[0]
        wire.append(
            {
                "method": req.method,
                "url": str(req.url),
                "status": response.status_code,
                "www_authenticate": response.headers.get("www-authenticate"),
                "grant_type": grant,
            }
        )

    http = httpx2.AsyncClient(auth=provider, timeout=60, event_hooks={"response": [log_response]})
    async with http, Client(streamable_http_client(mcp_url, http_client=http)) as client:
        first_401 = next((w for w in wire if w["status"] == 401), None)
        assert first_401 is not None, f"no 401: {wire}"
        assert 'resource_metadata="' in (first_401["www_authenticate"] or "")
        assert any("/.well-known/oauth-protected-resource" in w["url"] and w["status"] == 200 for w in wire), "PRM"
        assert any("/.well-known/oauth-authorization-server" in w["url"] and w["status"] == 200 for w in wire), "ASM"
        assert any(w["url"].endswith("/register") and w["status"] == 201 for w in wire), "DCR"
        assert len(authorizations) == 1
        a1 = parse_qs(urlparse(authorizations[0]).query)
        assert a1["code_challenge_method"] == ["S256"] and a1.get("code_challenge"), a1
        assert a1.get("resource") == [mcp_url], f"resource indicator: {a1.get('resource')}"
        first = storage.tokens
        assert first is not None
        step("authorized", {"scope": first.scope, "refresh": bool(first.refresh_token), "requested": a1.get("scope")})
        step("connected", {"protocol": str(client.session.protocol_version) if hasattr(client.session, "protocol_version") else None})

        tools = await client.list_tools()
        names = [t.name for t in tools.tools]
        assert "echo" in names and step_up_tool in names, names
        step("tools/list", {"count": len(names)})
        echoed = await client.call_tool("echo", {"message": "hello from Python"})
        assert not echoed.is_error, echoed
        assert "hello from Python" in text_of(echoed), text_of(echoed)
        step("tools/call echo", {"text": text_of(echoed)})

        # Step-up: the SDK sees 403 insufficient_scope and re-authorizes inline with the union of scopes.
        before = len(wire)
        summed = await client.call_tool(step_up_tool, {"a": 2, "b": 3})
        assert "5" in text_of(summed), summed
        forbidden = next((w for w in wire[before:] if w["status"] == 403), None)
        assert forbidden is not None, "the front door answered 403"
        assert 'error="insufficient_scope"' in (forbidden["www_authenticate"] or "")
        assert len(authorizations) == 2, authorizations
        stepped = storage.tokens
        assert stepped is not None and stepped.access_token != first.access_token
        step("step-up", {"challenge": forbidden["www_authenticate"], "scope": stepped.scope, "text": text_of(summed)})

        # Refresh: the token's lifetime runs out (we move the SDK's clock mark, no waiting); the
        # next request refreshes first.
        assert stepped.refresh_token, f"no refresh token: scope {stepped.scope}"
        provider.context.token_expiry_time = time.time() - 1
        before = len(wire)
        again = await client.call_tool("echo", {"message": "after refresh"})
        assert "after refresh" in text_of(again)
        refresh = next((w for w in wire[before:] if w["grant_type"] == "refresh_token"), None)
        assert refresh is not None and refresh["status"] == 200, wire[before:]
        refreshed = storage.tokens
        assert refreshed is not None and refreshed.refresh_token != stepped.refresh_token, "refresh tokens rotate"
        assert len(authorizations) == 2, "no new authorization for a refresh"
        step("refresh", {"status": refresh["status"]})

    await browser.http.aclose()
    callback.server.close()
    print(
        "RESULT "
        + json.dumps(
            {
                "ok": True,
                "clientId": storage.client.client_id if storage.client else None,
                "firstScope": first.scope,
                "firstRefresh": bool(first.refresh_token),
                "authorizationScopes": [parse_qs(urlparse(a).query).get("scope", [""])[0] for a in authorizations],
                "stepUpChallenge": forbidden["www_authenticate"],
                "steppedScope": stepped.scope,
                "refreshedAccessToken": refreshed.access_token,
                "logins": browser.logins,
                "consents": browser.consents,
                "tools": len(names),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: py_client.py <mcp-url> <step-up-tool>", file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
