#!/usr/bin/env bash
# Trace export's cost on the request path: load.sh's claw case (wrk, 32 connections,
# one nginx upstream and the client on core 0, sidekey with one runtime worker on
# core 1) run against two sidekeys, alternating within each round:
#   off        no `telemetry:`
#   blackhole  `telemetry.otlp` to a collector that accepts connections and never
#              answers (tests/py/otlp_receiver.py --blackhole): every export hangs
#              until its timeout, the queue fills, spans are dropped and counted.
#
#   benches/telemetry_load.sh            # DUR=8s CONNS=32 ROUNDS=3
#
# Prints req/s and p50/p99 per case, the blackhole/off throughput ratio, and the
# dropped-spans counter. Installs nginx and wrk (Debian) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-8s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
PY=${SIDEKEY_TEST_PYTHON:-$PWD/.venv/bin/python}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
cargo build --release --quiet
BIN=$PWD/target/release/sidekey

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); OFF=$(free_port); OFFA=$(free_port); ON=$(free_port); ONA=$(free_port)
TOKEN=bench-token-0123456789abcdef

cat > "$tmp/upstream.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/up.pid; error_log $tmp/up.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$UP; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"ok":true}'; } } }
NGINX
"$PY" tests/py/otlp_receiver.py --blackhole > "$tmp/hole.out" & pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/hole.out" 2>/dev/null && break; sleep 0.1; done
HOLE=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$tmp/hole.out")

config() { # listen admin extra
  cat <<YAML
version: 1
agent: bench
listen: 127.0.0.1:$1
admin_listen: 127.0.0.1:$2
audit: {file: $tmp/audit-$1.jsonl}
upstreams: {api.test: 127.0.0.1:$UP}
credentials:
  bot: {source: env, env: BENCH_TOKEN}
routes:
  - {name: claw, match: {host: api.test}, auth: claw, credential: bot}
$3
YAML
}
config "$OFF" "$OFFA" "" > "$tmp/off.yaml"
config "$ON" "$ONA" "telemetry: {otlp: {endpoint: \"http://$HOLE\"}}" > "$tmp/on.yaml"

taskset -c 0 nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
for c in off on; do
  BENCH_TOKEN=$TOKEN SIDEKEY_WORKERS=1 SIDEKEY_LOG=error taskset -c 1 "$BIN" run --config "$tmp/$c.yaml" 2>"$tmp/$c.err" & pids+=($!)
done
for a in "$OFFA" "$ONA"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$a/healthz" >/dev/null && break; sleep 0.1; done
done
curl -sf -o /dev/null -x "http://127.0.0.1:$OFF" http://api.test/v1/x
curl -sf -o /dev/null -x "http://127.0.0.1:$ON" http://api.test/v1/x
cat > "$tmp/claw.lua" <<'LUA'
wrk.path = "http://api.test/v1/x"
wrk.headers["Host"] = "api.test"
LUA
for r in $(seq "$ROUNDS"); do
  taskset -c 0 wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$tmp/claw.lua" "http://127.0.0.1:$OFF" > "$tmp/out.off.$r" 2>&1
  taskset -c 0 wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$tmp/claw.lua" "http://127.0.0.1:$ON" > "$tmp/out.blackhole.$r" 2>&1
done
DROPPED=$(curl -sf "http://127.0.0.1:$ONA/metrics" | awk '/^sidekey_telemetry_dropped_spans_total/ {print $2}')
python3 - "$tmp" "$ROUNDS" "$DROPPED" <<'PY'
import re, statistics, sys
tmp, rounds, dropped = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    lat = {p: ms(*re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()) for p in ("50", "99")}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    return rps, lat["50"], lat["99"], int(bad.group(1)) if bad else 0
res = {}
print(f"{'case':<12}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}   per round req/s")
for c in ("off", "blackhole"):
    runs = [parse(f"{tmp}/out.{c}.{r}") for r in range(1, rounds + 1)]
    res[c] = [statistics.median(x[i] for x in runs) for i in range(3)] + [sum(x[3] for x in runs)]
    print(f"{c:<12}{res[c][0]:>10.0f}{res[c][1]:>9.3f}{res[c][2]:>9.3f}{res[c][3]:>9}   {[round(x[0]) for x in runs]}")
print(f"blackhole/off: throughput {res['blackhole'][0] / res['off'][0]:.3f}x, p99 {res['blackhole'][2] / res['off'][2]:.3f}x")
print(f"spans dropped (counted) by the blackhole sidekey: {dropped}")
PY
