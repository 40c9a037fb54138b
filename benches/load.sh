#!/usr/bin/env bash
# Side-by-side load benchmark: sidekey vs nginx doing the same job (a reverse proxy that
# injects `Authorization: Bearer ...`), in one run on loopback.
#
#   benches/load.sh                 # DUR=10s CONNS=32 ROUNDS=3
#
# Layout on the 2-core machine: the fast upstream (its own nginx, 1 worker) and wrk share
# core 0; the proxy under test (nginx with 1 worker, or sidekey with 1 runtime worker
# thread) runs alone on core 1, so both get the same CPU budget. Cases alternate within
# each round. Prints throughput, p50/p99 latency, added p99 over direct, peak RSS, and
# the sidekey/nginx ratios. Installs nginx and wrk (Debian) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}

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
UP=$(free_port); NGX=$(free_port); SK=$(free_port); SKA=$(free_port)
TOKEN=bench-token-0123456789abcdef

cat > "$tmp/upstream.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/up.pid; error_log $tmp/up.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$UP; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"ok":true}'; } } }
NGINX
cat > "$tmp/proxy.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/ngx.pid; error_log $tmp/ngx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream up { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGX; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Authorization "Bearer $TOKEN"; } } }
NGINX
mkdir -p "$tmp/creds"; echo "user-token-alice-0123456789" > "$tmp/creds/alice.txt"
cat > "$tmp/sidekey.yaml" <<YAML
version: 1
agent: bench
listen: 127.0.0.1:$SK
admin_listen: 127.0.0.1:$SKA
audit: {file: $tmp/audit.jsonl}
upstreams: {api.test: 127.0.0.1:$UP, user.test: 127.0.0.1:$UP}
credentials:
  bot: {source: env, env: BENCH_TOKEN}
  user: {source: file, file: "creds/{user}.txt"}
routes:
  - {name: claw, match: {host: api.test}, auth: claw, credential: bot}
  - {name: assistant, match: {host: user.test}, auth: assistant, credential: user}
  - {name: gateway, gateway: {prefix: /gw, upstream: "http://127.0.0.1:$UP"}, auth: claw, credential: bot}
YAML

taskset -c 0 nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
taskset -c 1 nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!)
BENCH_TOKEN=$TOKEN SIDEKEY_WORKERS=1 SIDEKEY_LOG=warn taskset -c 1 "$BIN" run --config "$tmp/sidekey.yaml" 2>"$tmp/sidekey.err" & pids+=($!)
SKPID=$!
for i in $(seq 100); do curl -sf "http://127.0.0.1:$SKA/healthz" >/dev/null && break; sleep 0.1; done

lua() { # $1 path (absolute-form for the forward proxy), $2 extra header line
  cat > "$tmp/$3.lua" <<LUA
wrk.path = "$1"
$2
LUA
  echo "$tmp/$3.lua"
}
L_DIRECT=$(lua "/v1/x" "" direct)
L_NGINX=$(lua "/v1/x" "" nginx)
L_CLAW=$(lua "http://api.test/v1/x" 'wrk.headers["Host"] = "api.test"' claw)
L_ASSIST=$(lua "http://user.test/v1/x" 'wrk.headers["Host"] = "user.test"; wrk.headers["x-sidekey-user"] = "alice"' assistant)
L_GW=$(lua "/gw/v1/x" "" gateway)

# Sanity: each path really injects.
curl -sf -o /dev/null "http://127.0.0.1:$NGX/v1/x"
curl -sf -o /dev/null -x "http://127.0.0.1:$SK" http://api.test/v1/x
curl -sf -o /dev/null -x "http://127.0.0.1:$SK" -H 'x-sidekey-user: alice' http://user.test/v1/x
curl -sf -o /dev/null "http://127.0.0.1:$SK/gw/v1/x"

run() { # name port script
  taskset -c 0 wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$3" "http://127.0.0.1:$2" > "$tmp/out.$1.$r" 2>&1
}
ngx_worker() { pgrep -P "$(cat "$tmp/ngx.pid")" | head -1; }
for r in $(seq "$ROUNDS"); do
  run direct "$UP" "$L_DIRECT"
  run nginx "$NGX" "$L_NGINX"
  run claw "$SK" "$L_CLAW"
  run assistant "$SK" "$L_ASSIST"
  run gateway "$SK" "$L_GW"
done
SK_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SKPID/status")
NGX_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$(ngx_worker)/status")
sleep 1
SK_IDLE=$(awk '/VmRSS/ {print $2}' "/proc/$SKPID/status")
AUDIT_LINES=$(wc -l < "$tmp/audit.jsonl")

python3 - "$tmp" "$ROUNDS" "$SK_HWM" "$NGX_HWM" "$SK_IDLE" "$AUDIT_LINES" <<'PY'
import re, statistics, sys
tmp, rounds, sk_hwm, ngx_hwm, sk_idle, audit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    lat = {p: ms(*re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()) for p in ("50", "99")}
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    return rps, lat["50"], lat["99"], int(errs.group(1)) if errs else 0
cases = ["direct", "nginx", "claw", "assistant", "gateway"]
res = {}
for c in cases:
    runs = [parse(f"{tmp}/out.{c}.{r}") for r in range(1, rounds + 1)]
    res[c] = tuple(statistics.median(x[i] for x in runs) for i in range(3)) + (sum(x[3] for x in runs),)
d99 = res["direct"][2]
print(f"{'case':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'+p99 ms':>9}{'non-2xx':>9}")
for c in cases:
    rps, p50, p99, bad = res[c]
    label = {"claw": "sidekey claw", "assistant": "sidekey assistant", "gateway": "sidekey gateway"}.get(c, c)
    print(f"{label:<22}{rps:>10.0f}{p50:>9.3f}{p99:>9.3f}{p99 - d99:>9.3f}{bad:>9}")
n = res["nginx"]
print()
for c in ("claw", "assistant", "gateway"):
    print(f"sidekey {c}/nginx: throughput {res[c][0] / n[0]:.2f}x, added p99 {(res[c][2] - d99):.3f} ms vs nginx {(n[2] - d99):.3f} ms")
print(f"peak RSS: sidekey {sk_hwm / 1024:.1f} MiB, nginx worker {ngx_hwm / 1024:.1f} MiB; sidekey idle after load {sk_idle / 1024:.1f} MiB")
print(f"audit records written by sidekey: {audit}")
PY
