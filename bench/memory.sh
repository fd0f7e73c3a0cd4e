#!/usr/bin/env bash
# Memory: ezforge's RSS idle, while 1,000 SSE streams are held open through the front door,
# and after they close. Usage: bench/memory.sh [streams]
source "$(dirname "$0")/lib.sh"
ensure_tools
build
N=${1:-1000}
UP=$(free_port); EZ=$(free_port)
"$TOOL" upstream --port "$UP" --workers 2 >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/ready"
export EZFORGE_SERVER__LISTEN=127.0.0.1:$EZ EZFORGE_SERVER__DATA_DIR=$WORK/data
export EZFORGE_ADMIN_PASSWORD=bench-password-123 EZFORGE_LOGGING__LEVEL=warn
export EZFORGE_GATEWAY__RATE_LIMIT__PER_MINUTE=100000000 EZFORGE_GATEWAY__RATE_LIMIT__BURST=100000000
# Departed clients are noticed at the next keepalive; keep it short so the "after" figure is settled.
export EZFORGE_GATEWAY__SSE_KEEPALIVE=1s
"$BIN" serve >/dev/null 2>"$WORK/ezforge.log" & PIDS+=($!); EZPID=$!
wait_http "http://127.0.0.1:$EZ/v1/health"
API=http://127.0.0.1:$EZ/v1
T=$(curl -fs "$API/auth/login" -H 'content-type: application/json' -d '{"email":"admin@localhost","password":"bench-password-123"}' | json 'd["data"]["token"]')
curl -fs "$API/projects" -H "authorization: Bearer $T" -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
curl -fs "$API/projects/bench/servers" -H "authorization: Bearer $T" -H 'content-type: application/json' -d "{\"name\":\"fast\",\"upstreamUrl\":\"http://127.0.0.1:$UP/mcp\"}" >/dev/null
"$TOOL" managed-tokens --data-dir "$WORK/data" --issuer "http://127.0.0.1:$EZ" --resource "http://127.0.0.1:$EZ/mcp/fast" --count 100 > "$WORK/tokens.txt"
rss() { echo $(( $(awk '/VmRSS/ {print $2}' /proc/$EZPID/status) / 1024 )); }
idle=$(rss)
round() { # prints "open held after"
  "$TOOL" streams --url "http://127.0.0.1:$EZ/mcp/fast" --tokens "$WORK/tokens.txt" --count "$N" --seconds 5 > "$WORK/streams.out" & local sp=$!
  for _ in $(seq 1 600); do grep -q "streams open" "$WORK/streams.out" 2>/dev/null && break; sleep 0.1; done
  local open held
  open=$(awk '/streams open/ {print $3}' "$WORK/streams.out"); held=$(rss)
  wait $sp
  sleep 3   # > one keepalive: every departed stream has been noticed and dropped
  echo "sockets=$(ls -l /proc/$EZPID/fd | grep -c socket)" >&2
  echo "$open $held $(rss)"
}
read -r open1 held1 after1 < <(round)
read -r open2 held2 after2 < <(round)
read -r open3 held3 after3 < <(round)
echo "cores: $(nproc)"
echo "RSS idle (after one login: argon2 used 19 MiB):   ${idle} MB"
echo "round 1: ${open1}/${N} SSE streams open: ${held1} MB; after they closed: ${after1} MB"
echo "round 2: ${open2}/${N} SSE streams open: ${held2} MB; after they closed: ${after2} MB"
echo "round 3: ${open3}/${N} SSE streams open: ${held3} MB; after they closed: ${after3} MB"
echo "(freed memory stays with glibc's allocator rather than returning to the OS; later rounds not growing shows nothing leaks)"
