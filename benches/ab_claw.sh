#!/usr/bin/env bash
# A/B: two sidekey binaries ($A, $B), claw case, same layout as benches/load.sh
# (upstream nginx + wrk on core 0, each sidekey SIDEKEY_WORKERS=1 on core 1), alternating.
#
#   benches/ab_claw.sh OLD_BINARY NEW_BINARY      # DUR=5s ROUNDS=4
#
# Prints, per round, req/s, p99, the proxy's CPU % of its core and CPU µs per request
# (utime+stime from /proc/PID/stat). Needs nginx and wrk (see benches/load.sh).
set -euo pipefail
A=$1; B=$2; DUR=${DUR:-5s}; ROUNDS=${ROUNDS:-4}; CONNS=32
. "$(dirname "$0")/common.sh"
UP=$(free_port); TOKEN=$BENCH_TOKEN_VALUE
upstream_nginx "$UP" 0
declare -A PORT APORT PID
for v in A B; do
  PORT[$v]=$(free_port); APORT[$v]=$(free_port)
  claw_yaml "$tmp/$v.yaml" "${PORT[$v]}" "${APORT[$v]}" "$UP"
  bin=$A; [ $v = B ] && bin=$B
  BENCH_TOKEN=$TOKEN SIDEKEY_WORKERS=1 SIDEKEY_LOG=warn taskset -c 1 "$bin" run --config "$tmp/$v.yaml" 2>"$tmp/$v.err" & pids+=($!)
  PID[$v]=$!
done
for v in A B; do wait_ready "${APORT[$v]}"; done
sleep 1
printf 'wrk.path = "http://api.test/v1/x"\nwrk.headers["Host"] = "api.test"\n' > "$tmp/claw.lua"
HZ=$(getconf CLK_TCK)
echo "variant round req/s p99 cpu% cpu_us/req"
for r in $(seq "$ROUNDS"); do for v in A B; do
  c0=$(ticks "${PID[$v]}"); t0=$(date +%s.%N)
  taskset -c 0 wrk -t1 -c$CONNS -d"$DUR" --latency -s "$tmp/claw.lua" "http://127.0.0.1:${PORT[$v]}" > "$tmp/out" 2>&1
  t1=$(date +%s.%N); c1=$(ticks "${PID[$v]}")
  python3 - "$tmp/out" "$((c1-c0))" "$HZ" "$t0" "$t1" "$v" "$r" <<'PY'
import re, sys
t = open(sys.argv[1]).read(); ticks, hz, t0, t1 = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)); n = int(re.search(r"(\d+) requests in", t).group(1))
p99 = re.search(r"\s99%\s+(\S+)", t).group(1); bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(sys.argv[6], sys.argv[7], f"{rps:.0f}", p99, f"{100*ticks/hz/(t1-t0):.0f}", f"{1e6*ticks/hz/n:.2f}", f"non2xx={bad.group(1)}" if bad else "")
PY
done; done
