#!/usr/bin/env bash
# Front-door overhead: a fast upstream hit directly and through ezforge (managed token, BYOA
# token, 1,000 distinct tokens), 64 connections; then latency added at a fixed 2,000 rps.
# Usage: bench/frontdoor.sh   (DURATION=10 seconds per wrk run)
source "$(dirname "$0")/lib.sh"
ensure_tools
build

UP=$(free_port); EZ=$(free_port); ISS=$(free_port)
"$TOOL" upstream --port "$UP" >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/ready"   # any answer will do (GET /mcp is an endless SSE stream)

export EZFORGE_SERVER__LISTEN=127.0.0.1:$EZ EZFORGE_SERVER__DATA_DIR=$WORK/data
export EZFORGE_ADMIN_PASSWORD=bench-password-123 EZFORGE_LOGGING__LEVEL=warn
export EZFORGE_GATEWAY__RATE_LIMIT__PER_MINUTE=100000000 EZFORGE_GATEWAY__RATE_LIMIT__BURST=100000000
export EZFORGE_OUTBOUND__ALLOW_PRIVATE_ADDRESSES=true EZFORGE_OUTBOUND__CA_FILES="[\"$WORK/issuer/ca.pem\"]"
"$TOOL" issuer --port "$ISS" --dir "$WORK/issuer" --resource "http://127.0.0.1:$EZ/mcp/ext" --count 1000 >/dev/null & PIDS+=($!)
for _ in $(seq 1 2000); do [ -s "$WORK/issuer/tokens.txt" ] && [ -s "$WORK/issuer/ca.pem" ] && break; done
"$BIN" serve >/dev/null 2>"$WORK/ezforge.log" & PIDS+=($!); EZPID=$!
wait_http "http://127.0.0.1:$EZ/v1/health"

API=http://127.0.0.1:$EZ/v1
T=$(curl -fs "$API/auth/login" -H 'content-type: application/json' -d '{"email":"admin@localhost","password":"bench-password-123"}' | json 'd["data"]["token"]')
call() { curl -fs "$API$2" -X "$1" -H "authorization: Bearer $T" -H 'content-type: application/json' ${3:+-d "$3"}; }
call POST /projects '{"name":"bench"}' >/dev/null
call POST /projects/bench/servers "{\"name\":\"fast\",\"upstreamUrl\":\"http://127.0.0.1:$UP/mcp\"}" >/dev/null
call POST /projects/bench/servers "{\"name\":\"ext\",\"upstreamUrl\":\"http://127.0.0.1:$UP/mcp\"}" >/dev/null
call PATCH /servers/ext/auth "{\"authMode\":\"byoa\",\"byoaConfig\":{\"issuer\":\"https://127.0.0.1:$ISS\",\"jwksUri\":\"https://127.0.0.1:$ISS/jwks.json\",\"authorizationEndpoint\":\"https://127.0.0.1:$ISS/a\",\"tokenEndpoint\":\"https://127.0.0.1:$ISS/t\"}}" >/dev/null

"$TOOL" managed-tokens --data-dir "$WORK/data" --issuer "http://127.0.0.1:$EZ" --resource "http://127.0.0.1:$EZ/mcp/fast" --count 1 > "$WORK/one.txt"
"$TOOL" managed-tokens --data-dir "$WORK/data" --issuer "http://127.0.0.1:$EZ" --resource "http://127.0.0.1:$EZ/mcp/fast" --count 1000 > "$WORK/many.txt"
head -1 "$WORK/issuer/tokens.txt" > "$WORK/byoa-one.txt"

DIRECT=http://127.0.0.1:$UP/mcp
GATE=http://127.0.0.1:$EZ/mcp/fast
EXT=http://127.0.0.1:$EZ/mcp/ext
# Warm up (connection pools, verified-token cache, JWKS).
TOKENS=$WORK/one.txt DURATION=2 rps "$GATE" >/dev/null
TOKENS=$WORK/byoa-one.txt DURATION=2 rps "$EXT" >/dev/null

direct=$(TOKENS= rps "$DIRECT")
managed=$(TOKENS=$WORK/one.txt rps "$GATE")
byoa=$(TOKENS=$WORK/byoa-one.txt rps "$EXT")
rotating=$(TOKENS=$WORK/many.txt rps "$GATE")
byoa_rotating=$(TOKENS=$WORK/issuer/tokens.txt rps "$EXT")

pct() { python3 -c "print(f'{100*$1/$2:.0f}%')"; }
echo "cores: $(nproc)   wrk -t2 -c${CONNS:-64} -d${DURATION:-10}s, tools/call JSON-RPC"
printf '%-44s %10s %8s\n' "path" "req/s" "vs direct"
printf '%-44s %10s %8s\n' "direct to upstream" "$direct" "100%"
printf '%-44s %10s %8s\n' "ezforge, managed token" "$managed" "$(pct "$managed" "$direct")"
printf '%-44s %10s %8s\n' "ezforge, BYOA token" "$byoa" "$(pct "$byoa" "$direct")"
printf '%-44s %10s %8s\n' "ezforge, 1,000 managed tokens in rotation" "$rotating" "$(pct "$rotating" "$direct")"
printf '%-44s %10s %8s\n' "ezforge, 1,000 BYOA tokens in rotation" "$byoa_rotating" "$(pct "$byoa_rotating" "$direct")"

RATE=${RATE:-2000}
echo
echo "fixed rate ${RATE}/s for 10 s (open loop; latency from when each request was due):"
d=$("$TOOL" load --url "$DIRECT" --rate "$RATE" --seconds 10)
g=$("$TOOL" load --url "$GATE" --rate "$RATE" --seconds 10 --tokens "$WORK/many.txt")
echo "  direct:  $d"
echo "  ezforge: $g"
python3 - "$d" "$g" <<'PY'
import sys, re
def get(s, k): return float(re.search(k + r"=([0-9.]+)ms", s).group(1))
d, g = sys.argv[1], sys.argv[2]
print(f"  added by ezforge: p50 {get(g,'p50')-get(d,'p50'):+.3f} ms, p99 {get(g,'p99')-get(d,'p99'):+.3f} ms")
PY
echo "ezforge RSS after the runs: $(( $(awk '/VmRSS/ {print $2}' /proc/$EZPID/status) / 1024 )) MB"
