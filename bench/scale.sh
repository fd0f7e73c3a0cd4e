#!/usr/bin/env bash
# Scale: token endpoint throughput with 10,000 servers, 100,000 clients and 1,000,000 refresh
# tokens in the store, against the same figures on an empty store; and start-up time.
# Usage: bench/scale.sh   (DURATION=10 seconds per wrk run)
source "$(dirname "$0")/lib.sh"
ensure_tools
build
EZ=$(free_port); UP=$(free_port)
"$TOOL" upstream --port "$UP" >/dev/null & PIDS+=($!)
export EZFORGE_SERVER__LISTEN=127.0.0.1:$EZ EZFORGE_SERVER__DATA_DIR=$WORK/data
export EZFORGE_ADMIN_PASSWORD=bench-password-123 EZFORGE_LOGGING__LEVEL=warn
start() { "$BIN" serve >/dev/null 2>>"$WORK/ezforge.log" & EZPID=$!; PIDS+=($EZPID); wait_http "http://127.0.0.1:$EZ/v1/health"; }
stop() { kill -TERM "$EZPID"; wait "$EZPID" 2>/dev/null || true; }

start
API=http://127.0.0.1:$EZ/v1
T=$(curl -fs "$API/auth/login" -H 'content-type: application/json' -d '{"email":"admin@localhost","password":"bench-password-123"}' | json 'd["data"]["token"]')
call() { curl -fs "$API$2" -X "$1" -H "authorization: Bearer $T" -H 'content-type: application/json' ${3:+-d "$3"}; }
call POST /projects '{"name":"bench"}' >/dev/null
call POST /projects/bench/servers "{\"name\":\"bench\",\"upstreamUrl\":\"http://127.0.0.1:$UP/mcp\"}" >/dev/null
conf=$(call POST /servers/bench/clients '{"name":"agent","redirectUris":["https://agent.example/cb"],"confidential":true}')
ccid=$(echo "$conf" | json 'd["data"]["clientId"]'); csecret=$(echo "$conf" | json 'd["data"]["clientSecret"]')
pcid=$(call POST /servers/bench/clients '{"name":"app","redirectUris":["https://bench.example/cb"],"scopes":["mcp:read","offline_access"]}' | json 'd["data"]["clientId"]')
resource="http://127.0.0.1:$EZ/mcp/bench"
enc=$(python3 -c "import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=''))" "$resource")

cc() { CONTENT_TYPE=application/x-www-form-urlencoded BASIC=$(printf '%s' "$ccid:$csecret" | base64 -w0) BODY="grant_type=client_credentials&resource=$enc" TOKENS= rps "http://127.0.0.1:$EZ/oauth/token"; }
rotations() {
  "$TOOL" seed --data-dir "$WORK/data" --kind refresh --client-id "$pcid" --resource "$resource" --slug bench --count 100000 > "$WORK/refresh.txt"
  local out
  out=$(LINES=$WORK/refresh.txt BODY="grant_type=refresh_token&refresh_token={}&client_id=$pcid" wrk -t2 -c"${CONNS:-64}" -d"${DURATION:-10}"s -s "$ROOT/bench/wrk/form.lua" "http://127.0.0.1:$EZ/oauth/token")
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; exit 1; fi
  echo "$out" | awk '/Requests\/sec/ {print int($2)}'
}
empty_cc=$(cc); empty_rot=$(rotations)
stop
t_empty_start=$(date +%s%N); start; t_empty=$(( ($(date +%s%N) - t_empty_start) / 1000000 )); stop

"$TOOL" grow --data-dir "$WORK/data" --servers 10000 --clients 100000 --refresh 1000000 >/dev/null
db_mb=$(( $(stat -c %s "$WORK/data/ezforge.db") / 1024 / 1024 ))
t0=$(date +%s%N); start; t_big=$(( ($(date +%s%N) - t0) / 1000000 ))
big_cc=$(cc); big_rot=$(rotations)
stop

pct() { python3 -c "print(f'{100*$1/$2:.0f}%')"; }
echo "cores: $(nproc)   wrk -t2 -c${CONNS:-64} -d${DURATION:-10}s; store grown to 10,000 servers, 100,000 clients, 1,000,000 refresh tokens (${db_mb} MB)"
printf '%-40s %12s %12s %8s\n' "measure" "empty store" "grown store" "ratio"
printf '%-40s %12s %12s %8s\n' "client_credentials tokens/s" "$empty_cc" "$big_cc" "$(pct "$big_cc" "$empty_cc")"
printf '%-40s %12s %12s %8s\n' "refresh rotations/s" "$empty_rot" "$big_rot" "$(pct "$big_rot" "$empty_rot")"
printf '%-40s %12s %12s\n' "start to ready (ms, incl. curl polling)" "$t_empty" "$t_big"
