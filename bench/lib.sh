# Shared helpers for the bench scripts (sourced). Loopback only; everything is killed on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/ezforge-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every request comes from 127.0.0.1: lift the per-address limit on /oauth/* so it is the
# server that is measured, not the limiter.
export EZFORGE_AUTH__RATE_LIMIT__PER_MINUTE=100000000 EZFORGE_AUTH__RATE_LIMIT__BURST=100000000

need() { command -v "$1" >/dev/null 2>&1; }
ensure_tools() {
  if ! need wrk; then
    echo "installing wrk (Debian package)…" >&2
    if need sudo; then sudo apt-get install -y wrk >/dev/null; else apt-get install -y wrk >/dev/null; fi
  fi
  need curl || { echo "curl is required" >&2; exit 1; }
  need python3 || { echo "python3 is required" >&2; exit 1; }
}

build() {
  (cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example bench_tool)
  BIN=$ROOT/target/release/ezforge
  TOOL=$ROOT/target/release/examples/bench_tool
}

# A free port below the kernel's ephemeral range, where the benchmark's own outgoing connections
# never land between this pick and the bind of the process it is for (bind 0 picked ephemeral
# ports, which wrk's connections could take first: "not ready").
free_port() {
  python3 - <<'PY'
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ports = list(range(max(1024, lo - 16384), lo))
random.shuffle(ports)
for p in ports:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
}

wait_http() { # url [tries]
  for _ in $(seq 1 "${2:-2000}"); do curl -ks -o /dev/null --max-time 2 "$1" && return 0; done
  echo "not ready: $1" >&2; return 1
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# wrk -t2 -c64 for $DURATION seconds; prints requests/second.
rps() { # url [extra env assignments via env]
  local out
  out=$(wrk -t2 -c"${CONNS:-64}" -d"${DURATION:-10}"s -s "$ROOT/bench/wrk/mcp.lua" "$1")
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; echo "non-2xx answers while benchmarking $1" >&2; exit 1; fi
  echo "$out" | awk '/Requests\/sec/ {print int($2)}'
}
