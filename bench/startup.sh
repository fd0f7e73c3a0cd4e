#!/usr/bin/env bash
# Start-to-ready time on an existing data dir, idle RSS, and release binary size.
# Usage: bench/startup.sh [runs]   (builds the release binary first; loopback only; bounded)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
cargo build --release --quiet
bin=target/release/ezforge
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export EZFORGE_SERVER__LISTEN=127.0.0.1:$port EZFORGE_SERVER__DATA_DIR=$data/d EZFORGE_LOGGING__LEVEL=warn
export EZFORGE_ADMIN_PASSWORD=bench-password-123

wait_ready() { # polls /v1/health; prints milliseconds since $1 (ns)
  local start=$1
  for _ in $(seq 1 5000); do
    if curl -fs -o /dev/null "http://127.0.0.1:$port/v1/health"; then
      echo $(( ($(date +%s%N) - start) / 1000000 )); return 0
    fi
  done
  echo "server did not become ready" >&2; return 1
}

# First start creates the data dir (argon2 hash of the admin password, keys): not measured.
"$bin" serve >/dev/null 2>&1 & pid=$!
wait_ready "$(date +%s%N)" >/dev/null
kill -TERM $pid; wait $pid || true

times=()
for _ in $(seq 1 "$runs"); do
  t0=$(date +%s%N)
  "$bin" serve >/dev/null 2>&1 & pid=$!
  times+=("$(wait_ready "$t0")")
  kill -TERM $pid; wait $pid || true
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
worst=$(echo "$sorted" | tail -1)

"$bin" serve >/dev/null 2>&1 & pid=$!
wait_ready "$(date +%s%N)" >/dev/null
# Settle, then read resident memory of the idle process.
for _ in 1 2 3; do curl -fs -o /dev/null "http://127.0.0.1:$port/v1/health"; done
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid || true

size=$(stat -c %s "$bin")
echo "cores:              $(nproc)"
echo "start to ready:     median ${median} ms, worst ${worst} ms over ${runs} runs (existing data dir)"
echo "idle RSS:           $((rss_kb / 1024)) MB (${rss_kb} kB)"
echo "release binary:     $((size / 1024 / 1024)) MB (${size} bytes)"
