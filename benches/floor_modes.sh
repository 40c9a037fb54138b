#!/usr/bin/env bash
# The hyper floor's upstream hop, three ways (benches/hyper_floor.rs modes): hyper-util's
# pooled client, one upstream connection per downstream connection with a spawned
# connection task ("affinity"), and the same driven inside the downstream task
# ("inline"). Same layout as benches/load.sh: upstream nginx (1 worker) and wrk on
# core 0, the proxy under test alone on core 1; cases alternate within each round.
#
#   benches/floor_modes.sh          # DUR=8s CONNS=32 ROUNDS=3
#
# Prints median req/s, p50/p99 and the proxy's CPU (utime+stime from /proc/PID/stat)
# per request, in microseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-8s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-pool affinity inline}

FLOOR=$(cargo build --profile bench --quiet --bench hyper_floor --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "hyper_floor" and m.get("executable"):
        print(m["executable"])')
[ -x "$FLOOR" ] || { echo "floor_modes.sh: cannot find the hyper_floor bench binary" >&2; exit 1; }

. benches/common.sh
UP=$(free_port)
TOKEN=$BENCH_TOKEN_VALUE
upstream_nginx "$UP" 0
declare -A PORT PID
for m in $MODES; do
  PORT[$m]=$(free_port)
  taskset -c 1 "$FLOOR" "127.0.0.1:${PORT[$m]}" "127.0.0.1:$UP" "$TOKEN" "$m" & pids+=($!)
  PID[$m]=$!
done
sleep 1
for m in $MODES; do
  got=$(curl -sf "http://127.0.0.1:${PORT[$m]}/auth")
  [ "$got" = yes ] || { echo "floor_modes.sh: $m did not inject ($got)" >&2; exit 1; }
done
echo 'wrk.path = "/v1/x"' > "$tmp/floor.lua"
HZ=$(getconf CLK_TCK)
for r in $(seq "$ROUNDS"); do
  for m in $MODES; do
    c0=$(ticks "${PID[$m]}"); t0=$(date +%s.%N)
    taskset -c 0 wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$tmp/floor.lua" "http://127.0.0.1:${PORT[$m]}" > "$tmp/out.$m.$r" 2>&1
    t1=$(date +%s.%N); c1=$(ticks "${PID[$m]}")
    echo "$((c1 - c0)) $HZ $t0 $t1" > "$tmp/cpu.$m.$r"
  done
done
# Upstream connections each mode left open (affinity: one per downstream connection).
python3 - "$tmp" "$ROUNDS" $MODES <<'PY'
import re, statistics, sys
tmp, rounds, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
print(f"{'mode':<10}{'round':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'cpu%':>7}{'cpu us/req':>12}")
med = {}
for m in modes:
    rows = []
    for r in range(1, rounds + 1):
        t = open(f"{tmp}/out.{m}.{r}").read()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
        total = int(re.search(r"(\d+) requests in", t).group(1))
        p50, p99 = (ms(*re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()) for p in ("50", "99"))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
        ticks, hz, t0, t1 = open(f"{tmp}/cpu.{m}.{r}").read().split()
        cpu_s = int(ticks) / int(hz)
        cpu = 100 * cpu_s / (float(t1) - float(t0))
        us = 1e6 * cpu_s / total
        rows.append((rps, p50, p99, cpu, us))
        print(f"{m:<10}{r:>6}{rps:>10.0f}{p50:>9.3f}{p99:>9.3f}{int(bad.group(1)) if bad else 0:>9}{cpu:>7.0f}{us:>12.2f}")
    med[m] = [statistics.median(x[i] for x in rows) for i in range(5)]
print()
print(f"{'median':<10}{'':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'':>9}{'cpu%':>7}{'cpu us/req':>12}")
for m in modes:
    rps, p50, p99, cpu, us = med[m]
    ratio = f"  x{rps / med[modes[0]][0]:.2f} vs {modes[0]}" if m != modes[0] else ""
    print(f"{m:<10}{'':>6}{rps:>10.0f}{p50:>9.3f}{p99:>9.3f}{'':>9}{cpu:>7.0f}{us:>12.2f}{ratio}")
PY
