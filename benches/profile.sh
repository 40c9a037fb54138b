#!/usr/bin/env bash
# Where sidekey's CPU goes: a `perf record -e cpu-clock -g` profile of each plain-HTTP
# case (claw, assistant, gateway) under a steady wrk load, and the top user-space
# symbols of each. Same layout as load.sh: upstream nginx and wrk on core 0, sidekey
# (one runtime thread) on core 1.
#
#   benches/profile.sh [BINARY]    # default target/release/sidekey (built); DUR=6s TOP=15
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-6s}
TOP=${TOP:-15}
. benches/common.sh
need_debian nginx:nginx-light wrk:wrk perf:linux-perf
if [ $# -ge 1 ]; then BIN=$1; else cargo build --release --quiet; BIN=$PWD/target/release/sidekey; fi

UP=$(free_port); SK=$(free_port); SKA=$(free_port)
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
printf 'wrk.path = "http://api.test/v1/items"\nwrk.headers["Host"] = "api.test"\n' > "$tmp/claw.lua"
printf 'wrk.path = "http://user.test/v1/items"\nwrk.headers["Host"] = "user.test"\nwrk.headers["x-sidekey-user"] = "alice"\n' > "$tmp/assistant.lua"
printf 'wrk.path = "/gw/v1/items"\n' > "$tmp/gateway.lua"

upstream_nginx "$UP" 0
BENCH_TOKEN=$BENCH_TOKEN_VALUE SIDEKEY_WORKERS=1 SIDEKEY_LOG=warn \
  taskset -c 1 "$BIN" run --config "$tmp/sidekey.yaml" 2>"$tmp/sidekey.err" & pids+=($!)
SKPID=$!
wait_ready "$SKA"

for case in claw assistant gateway; do
  taskset -c 0 wrk -t1 -c32 -d2s -s "$tmp/$case.lua" "http://127.0.0.1:$SK/" >/dev/null
  perf record -q -e cpu-clock -F 2000 -g -p "$SKPID" -o "$tmp/$case.data" -- sleep "${DUR%s}" >/dev/null 2>&1 &
  rec=$!
  rps=$(taskset -c 0 wrk -t1 -c32 -d"$DUR" -s "$tmp/$case.lua" "http://127.0.0.1:$SK/" | awk '/Requests\/sec/ {print $2}')
  wait "$rec" || true
  echo "== $case ($rps req/s under perf): top $TOP user-space symbols, share of all samples"
  perf report -i "$tmp/$case.data" --no-children --sort symbol --stdio 2>/dev/null \
    | awk -v top="$TOP" '/^ +[0-9.]+%/ { if ($2 == "[k]") k += $1; else { u += $1; if (n++ < top) { $2 = ""; sub(/ +- -$/, ""); print } } }
        END { printf "   (user space %.1f%%, kernel %.1f%%)\n", u, k }' | cut -c1-120
done
