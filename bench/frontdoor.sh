#!/usr/bin/env bash
# Front-door overhead: a fast upstream hit directly, through two bare proxies (the floor: no
# token, policy, rate limit or log) and through ezforge (managed token, BYOA token, 1,000
# distinct tokens), 64 connections; then latency added at a fixed 2,000 rps.
# Usage: bench/frontdoor.sh   (DURATION=10 seconds per wrk run)
source "$(dirname "$0")/lib.sh"
ensure_tools
build

UP=$(free_port); EZ=$(free_port); ISS=$(free_port)
"$TOOL" upstream --port "$UP" >/dev/null & PIDS+=($!); UPPID=$!
wait_http "http://127.0.0.1:$UP/ready"   # any answer will do (GET /mcp is an endless SSE stream)
# The floor: bare proxies to the same upstream, with the front door's upstream client, on
# actix-web (ezforge's server) and on hyper's own server.
FA=$(free_port); FH=$(free_port)
"$TOOL" proxy --port "$FA" --upstream "http://127.0.0.1:$UP/mcp" >/dev/null & PIDS+=($!); FAPID=$!
"$TOOL" proxy --server hyper --port "$FH" --upstream "http://127.0.0.1:$UP/mcp" >/dev/null & PIDS+=($!); FHPID=$!
wait_http "http://127.0.0.1:$FA/ready"; wait_http "http://127.0.0.1:$FH/ready"

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
DURATION=2 rps "http://127.0.0.1:$FA/mcp" >/dev/null
DURATION=2 rps "http://127.0.0.1:$FH/mcp" >/dev/null

# CPU time each process spends per request during a run (from /proc, in microseconds).
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
measure() { # url tokens [proxy pid] -> "req/s proxy-us upstream-us"
  local e0 u0 r e1 u1 pid=${3:-$EZPID}
  e0=$(ticks "$pid"); u0=$(ticks "$UPPID")
  r=$(TOKENS=$2 rps "$1")
  e1=$(ticks "$pid"); u1=$(ticks "$UPPID")
  python3 -c "n=$r*${DURATION:-10}; print($r, f'{($e1-$e0)/$HZ/n*1e6:.1f}', f'{($u1-$u0)/$HZ/n*1e6:.1f}')"
}
read -r direct _ direct_up <<<"$(measure "$DIRECT" "")"
read -r floor_actix floor_actix_cpu floor_actix_up <<<"$(measure "http://127.0.0.1:$FA/mcp" "" "$FAPID")"
read -r floor_hyper floor_hyper_cpu floor_hyper_up <<<"$(measure "http://127.0.0.1:$FH/mcp" "" "$FHPID")"
read -r managed managed_ez managed_up <<<"$(measure "$GATE" "$WORK/one.txt")"
read -r byoa byoa_ez byoa_up <<<"$(measure "$EXT" "$WORK/byoa-one.txt")"
read -r rotating rotating_ez rotating_up <<<"$(measure "$GATE" "$WORK/many.txt")"
read -r byoa_rotating byoa_rotating_ez byoa_rotating_up <<<"$(measure "$EXT" "$WORK/issuer/tokens.txt")"

pct() { python3 -c "print(f'{100*$1/$2:.0f}%')"; }
echo "cores: $(nproc)   wrk -t2 -c${CONNS:-64} -d${DURATION:-10}s, tools/call JSON-RPC"
echo "CPU per request: microseconds of CPU time each process used, divided by the requests answered"
row() { printf '%-44s %10s %10s %12s %12s\n' "$@"; }
row "path" "req/s" "vs direct" "proxy CPU" "upstream CPU"
row "direct to upstream" "$direct" "100%" "-" "$direct_up us"
row "floor: bare proxy, actix-web" "$floor_actix" "$(pct "$floor_actix" "$direct")" "$floor_actix_cpu us" "$floor_actix_up us"
row "floor: bare proxy, hyper server" "$floor_hyper" "$(pct "$floor_hyper" "$direct")" "$floor_hyper_cpu us" "$floor_hyper_up us"
row "ezforge, managed token" "$managed" "$(pct "$managed" "$direct")" "$managed_ez us" "$managed_up us"
row "ezforge, BYOA token" "$byoa" "$(pct "$byoa" "$direct")" "$byoa_ez us" "$byoa_up us"
row "ezforge, 1,000 managed tokens in rotation" "$rotating" "$(pct "$rotating" "$direct")" "$rotating_ez us" "$rotating_up us"
row "ezforge, 1,000 BYOA tokens in rotation" "$byoa_rotating" "$(pct "$byoa_rotating" "$direct")" "$byoa_rotating_ez us" "$byoa_rotating_up us"
# A model, not a measurement: the direct run saturates the cores, so it costs 1e6*cores/direct
# microseconds of CPU per request (load generator + upstream). A proxy does the upstream's socket
# work twice (as a server and as a client); one costing exactly twice the upstream's CPU per
# request would reach this share of direct throughput on this machine.
python3 -c "c=1e6*$(nproc)/$direct; u=$direct_up; print(f'model: a proxy costing 2x the upstream ({2*u:.1f} us/request) would reach {100*c/(c+2*u):.0f}% of direct')"

RATE=${RATE:-2000}
PAIRS=${PAIRS:-3}
echo
echo "fixed rate ${RATE}/s, ${PAIRS} rounds of 10 s runs (direct, the actix-web floor, ezforge); open loop;"
echo "latency from sending (the generator's lag behind its schedule is reported apart):"
added=(); floor_added=()
added_by() { # direct-line proxied-line -> "p50-added p99-added"
  python3 - "$1" "$2" <<'PY'
import sys, re
def get(s, k): return float(re.search(r"(?<![_a-z])" + k + r"=([0-9.]+)ms", s).group(1))
d, g = sys.argv[1], sys.argv[2]
print(f"{get(g,'p50')-get(d,'p50'):.3f} {get(g,'p99')-get(d,'p99'):.3f}")
PY
}
for i in $(seq 1 "$PAIRS"); do
  d=$("$TOOL" load --url "$DIRECT" --rate "$RATE" --seconds 10)
  f=$("$TOOL" load --url "http://127.0.0.1:$FA/mcp" --rate "$RATE" --seconds 10)
  g=$("$TOOL" load --url "$GATE" --rate "$RATE" --seconds 10 --tokens "$WORK/many.txt")
  echo "  direct:  $d"
  echo "  floor:   $f"
  echo "  ezforge: $g"
  floor_added+=("$(added_by "$d" "$f")")
  added+=("$(added_by "$d" "$g")")
  echo "  added by the floor: p50 +$(cut -d' ' -f1 <<<"${floor_added[-1]}") ms, p99 +$(cut -d' ' -f2 <<<"${floor_added[-1]}") ms;" \
    "by ezforge: p50 +$(cut -d' ' -f1 <<<"${added[-1]}") ms, p99 +$(cut -d' ' -f2 <<<"${added[-1]}") ms"
done
python3 - "${#added[@]}" "${added[@]}" "${floor_added[@]}" <<'PY'
import sys, statistics
n = int(sys.argv[1])
def median(rows):
    pairs = [tuple(map(float, a.split())) for a in rows]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
for who, rows in (("the floor", sys.argv[2 + n:]), ("ezforge", sys.argv[2:2 + n])):
    p50, p99 = median(rows)
    print(f"median added by {who} over {n} rounds: p50 {p50:+.3f} ms, p99 {p99:+.3f} ms")
PY
echo "ezforge RSS after the runs: $(( $(awk '/VmRSS/ {print $2}' /proc/$EZPID/status) / 1024 )) MB"
