#!/usr/bin/env bash
# Authorization-code exchanges and refresh-token rotations per second (each writes to SQLite):
# seeds codes and refresh tokens, then wrk spends each one once. Usage: bench/grants.sh
source "$(dirname "$0")/lib.sh"
ensure_tools
build
N=${SEED:-100000}
EZ=$(free_port); UP=$(free_port)
"$TOOL" upstream --port "$UP" >/dev/null & PIDS+=($!)
export EZFORGE_SERVER__LISTEN=127.0.0.1:$EZ EZFORGE_SERVER__DATA_DIR=$WORK/data
export EZFORGE_ADMIN_PASSWORD=bench-password-123 EZFORGE_LOGGING__LEVEL=warn
"$BIN" serve >/dev/null 2>"$WORK/ezforge.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$EZ/v1/health"
API=http://127.0.0.1:$EZ/v1
T=$(curl -fs "$API/auth/login" -H 'content-type: application/json' -d '{"email":"admin@localhost","password":"bench-password-123"}' | json 'd["data"]["token"]')
call() { curl -fs "$API$2" -X "$1" -H "authorization: Bearer $T" -H 'content-type: application/json' ${3:+-d "$3"}; }
call POST /projects '{"name":"bench"}' >/dev/null
call POST /projects/bench/servers "{\"name\":\"bench\",\"upstreamUrl\":\"http://127.0.0.1:$UP/mcp\"}" >/dev/null
cid=$(call POST /servers/bench/clients '{"name":"app","redirectUris":["https://bench.example/cb"],"scopes":["mcp:read","offline_access"]}' | json 'd["data"]["clientId"]')
resource="http://127.0.0.1:$EZ/mcp/bench"
enc=$(python3 -c "import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=''))" "$resource")
"$TOOL" seed --data-dir "$WORK/data" --kind codes --client-id "$cid" --resource "$resource" --slug bench --count "$N" > "$WORK/codes.txt"
"$TOOL" seed --data-dir "$WORK/data" --kind refresh --client-id "$cid" --resource "$resource" --slug bench --count "$N" > "$WORK/refresh.txt"

form() { # LINES BODY url -> requests/s (fails on non-2xx)
  local out
  out=$(LINES=$1 BODY=$2 wrk -t2 -c"${CONNS:-64}" -d"${DURATION:-10}"s -s "$ROOT/bench/wrk/form.lua" "$3")
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; echo "non-2xx answers (seed more with SEED=…?)" >&2; exit 1; fi
  echo "$out" | awk '/Requests\/sec/ {print int($2)}'
}
verifier=bench-verifier-bench-verifier-bench-verifier-0123456789
codes=$(form "$WORK/codes.txt" "grant_type=authorization_code&code={}&redirect_uri=https%3A%2F%2Fbench.example%2Fcb&code_verifier=$verifier&client_id=$cid&resource=$enc" "http://127.0.0.1:$EZ/oauth/token")
refresh=$(form "$WORK/refresh.txt" "grant_type=refresh_token&refresh_token={}&client_id=$cid" "http://127.0.0.1:$EZ/oauth/token")
echo "cores: $(nproc)   wrk -t2 -c${CONNS:-64} -d${DURATION:-10}s; each request spends one seeded code or refresh token"
printf '%-44s %10s\n' "grant" "per second"
printf '%-44s %10s\n' "authorization_code exchange (grant + refresh token written)" "$codes"
printf '%-44s %10s\n' "refresh_token rotation (old marked, new written)" "$refresh"
