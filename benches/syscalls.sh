#!/usr/bin/env bash
# System calls per proxied request: sidekey (claw route, forward proxy) and nginx doing
# the same job (reverse proxy setting Authorization, keep-alive upstream), each traced
# with `strace -c -f` over a steady wrk run on loopback. strace slows the proxy down a
# lot, so read the counts per request, never the throughput.
#
#   benches/syscalls.sh            # DUR=5s CONNS=8; installs nginx, wrk, strace if missing
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-5s}
CONNS=${CONNS:-8}

. benches/common.sh
need_debian nginx:nginx-light wrk:wrk strace:strace
cargo build --release --quiet
BIN=$PWD/target/release/sidekey
UP=$(free_port); NGX=$(free_port); SK=$(free_port); SKA=$(free_port)

cat > "$tmp/proxy.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/ngx.pid; error_log $tmp/ngx.err;
events { worker_connections 1024; }
http { access_log off;
  upstream up { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGX; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Authorization "Bearer $BENCH_TOKEN_VALUE"; } } }
NGINX
claw_yaml "$tmp/sidekey.yaml" "$SK" "$SKA" "$UP"

upstream_nginx "$UP" 0
nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!)
BENCH_TOKEN=$BENCH_TOKEN_VALUE SIDEKEY_WORKERS=1 SIDEKEY_LOG=warn "$BIN" run --config "$tmp/sidekey.yaml" 2>"$tmp/sidekey.err" & pids+=($!)
SKPID=$!
wait_ready "$SKA"
for _ in $(seq 100); do [ -s "$tmp/ngx.pid" ] && break; sleep 0.1; done
NGXWORKER=$(pgrep -P "$(cat "$tmp/ngx.pid")" | head -1)

# wrk's forward-proxy request for sidekey: an absolute-form URI to api.test.
cat > "$tmp/absolute.lua" <<'LUA'
wrk.path = "http://api.test/"
wrk.headers["Host"] = "api.test"
LUA

# trace NAME PID URL [wrk args...]: prints "NAME requests" then strace's summary.
trace() {
  local name=$1 pid=$2 url=$3; shift 3
  wrk -t1 -c"$CONNS" -d2s "$@" "$url" >/dev/null  # warm: connections and pools
  strace -c -f -q -p "$pid" -o "$tmp/$name.strace" & local st=$!
  sleep 0.5
  local reqs
  reqs=$(wrk -t1 -c"$CONNS" -d"$DUR" "$@" "$url" | awk '/requests in/ {print $1}')
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  echo "$name $reqs" >> "$tmp/requests"
}
trace nginx "$NGXWORKER" "http://127.0.0.1:$NGX/"
trace sidekey "$SKPID" "http://127.0.0.1:$SK/" -s "$tmp/absolute.lua"

echo "system calls per request, $CONNS keep-alive connections (strace -c -f; wrk $DUR)"
python3 - "$tmp" <<'PY'
import sys, re
tmp = sys.argv[1]
reqs = dict(l.split() for l in open(f"{tmp}/requests"))
rows = {}
for name in ("nginx", "sidekey"):
    counts = {}
    for line in open(f"{tmp}/{name}.strace"):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = int(m.group(1))
    rows[name] = (int(reqs[name]), counts)
calls = sorted({c for _, cs in rows.values() for c in cs},
               key=lambda c: -max(cs.get(c, 0) / n for n, cs in rows.values()))
print(f"{'syscall':<16}" + "".join(f"{n:>12}" for n in rows))
for c in calls:
    per = [cs.get(c, 0) / n for n, cs in rows.values()]
    if max(per) >= 0.01:
        print(f"{c:<16}" + "".join(f"{p:>12.2f}" for p in per))
tot = [sum(cs.values()) / n for n, cs in rows.values()]
print(f"{'total':<16}" + "".join(f"{t:>12.2f}" for t in tot))
print(f"{'requests':<16}" + "".join(f"{n:>12}" for n, _ in rows.values()))
PY
