#!/usr/bin/env bash
# Side-by-side load benchmark: sidekey vs nginx doing the same job (a reverse proxy that
# injects `Authorization: Bearer ...`), in one run on loopback.
#
#   benches/load.sh                 # DUR=8s CONNS=32 ROUNDS=3 (about 4 minutes + build)
#   The "mcp" case POSTs a 1 KiB MCP tools/call decided by a tool rule (ratio to claw).
#
# The bench build activates dev-dependency features (tokio test-util), so the lib is
# compiled twice: once for the measured sidekey binary, once for tls_load.
#
# Layout on the 2-core machine: the fast upstream (its own nginx, 1 worker) and the load
# client share core 0; the proxy under test (nginx with 1 worker, or sidekey with 1 runtime
# worker thread) runs alone on core 1, so both get the same CPU budget. Cases alternate
# within each round. Prints throughput, p50/p99 latency, added p99 over direct, peak RSS,
# and the sidekey/nginx ratios. Installs nginx and wrk (Debian) if missing.
#
# "hyper floor" (benches/hyper_floor.rs, also on core 1) is the same stack with nothing
# but the header injection: the gap nginx -> floor is the stack's, floor -> sidekey is
# sidekey's own work (identity, policy, audit, metrics, response scrubbing). It holds
# one upstream connection per client connection, as sidekey does for plain HTTP/1;
# "hyper floor pool" is the same through hyper-util's pooled client.
#
# Plain HTTP cases are driven by wrk. HTTPS cases are driven by benches/tls_load.rs (wrk
# cannot speak through a CONNECT proxy), all at the same connection count and duration:
#   direct TLS      tls_load -> upstream nginx TLS listener (baseline for +p99)
#   nginx TLS       nginx terminates TLS for api.test, proxies plain HTTP keep-alive
#   nginx TLS->TLS  nginx terminates TLS, proxies over TLS (verified, keep-alive)
#   sidekey https   CONNECT api.test:443, sidekey intercepts (its CA), injects, and
#                   re-encrypts to the upstream TLS listener (verified, pooled)
# The HTTPS proxies are separate processes (a second sidekey and a second nginx, also on
# core 1, idle outside their cases), since `upstreams:` maps api.test to one address.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-8s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
cargo build --release --quiet
BIN=$PWD/target/release/sidekey
# Helper binaries (bench targets, built like the release binary); each path is taken
# from cargo's own report of the artifact.
bench_bin() {
  local path
  path=$(cargo build --profile bench --quiet --bench "$1" --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1")
  [ -x "$path" ] || { echo "load.sh: cannot find the $1 bench binary" >&2; exit 1; }
  echo "$path"
}
TLS_LOAD=$(bench_bin tls_load)  # the HTTPS load client
FLOOR=$(bench_bin hyper_floor)  # the stack's floor: hyper, injecting only (affinity or pool mode)

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NGX=$(free_port); SK=$(free_port); SKA=$(free_port); FL=$(free_port); FLP=$(free_port)
UPTLS=$(free_port); NGXTLS=$(free_port); NGXTT=$(free_port); SKT=$(free_port); SKTA=$(free_port)
TOKEN=bench-token-0123456789abcdef

# Certificates: sidekey's interception CA, and an upstream CA + api.test leaf (not a CA
# itself: rustls refuses CA certificates as end-entity) used by the upstream TLS listener
# and by nginx when it terminates TLS. All keys ECDSA P-256, like sidekey's minted leaves;
# every TLS leg is TLS 1.3 (nginx before 1.23.4 leaves it out of its defaults: set here).
"$BIN" ca init --out "$tmp/skca" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$tmp/upca.key" -out "$tmp/upca.crt" -subj "/CN=sidekey bench upstream CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$tmp/leaf.key" -out "$tmp/leaf.csr" -subj "/CN=api.test" 2>/dev/null
printf '%s\n' "basicConstraints=critical,CA:FALSE" "subjectAltName=DNS:api.test" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$tmp/leaf.ext"
openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/upca.crt" -CAkey "$tmp/upca.key" -set_serial 2 \
  -days 2 -extfile "$tmp/leaf.ext" -out "$tmp/leaf.crt" 2>/dev/null

cat > "$tmp/upstream.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/up.pid; error_log $tmp/up.err;
events { worker_connections 4096; }
http { access_log off;
  # /auth answers "yes" only if the proxy injected the bench token (sanity check below;
  # the token itself is never echoed, sidekey would scrub it).
  map \$http_authorization \$authok { "Bearer $TOKEN" yes; default no; }
  server { listen 127.0.0.1:$UP; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"ok":true}'; }
    location = /auth { default_type text/plain; return 200 \$authok; } }
  server { listen 127.0.0.1:$UPTLS ssl; server_name api.test; keepalive_requests 1000000;
    ssl_certificate $tmp/leaf.crt; ssl_certificate_key $tmp/leaf.key; ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type application/json; return 200 '{"ok":true}'; }
    location = /auth { default_type text/plain; return 200 \$authok; } } }
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
# The HTTPS nginx (core 1): TLS for api.test, then plain HTTP (NGXTLS) or TLS (NGXTT)
# to the upstream, both keep-alive; the TLS leg verifies the upstream like sidekey does.
cat > "$tmp/proxy-tls.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/ngxtls.pid; error_log $tmp/ngxtls.err;
events { worker_connections 4096; }
http { access_log off;
  ssl_certificate $tmp/leaf.crt; ssl_certificate_key $tmp/leaf.key; ssl_protocols TLSv1.2 TLSv1.3;
  upstream up { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
  upstream uptls { server 127.0.0.1:$UPTLS; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGXTLS ssl; server_name api.test; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Authorization "Bearer $TOKEN"; } }
  server { listen 127.0.0.1:$NGXTT ssl; server_name api.test; keepalive_requests 1000000;
    location / { proxy_pass https://uptls; proxy_http_version 1.1;
      proxy_set_header Host \$host; proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer $TOKEN";
      proxy_ssl_server_name on; proxy_ssl_name api.test; proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $tmp/upca.crt; } } }
NGINX
mkdir -p "$tmp/creds"; echo "user-token-alice-0123456789" > "$tmp/creds/alice.txt"
cat > "$tmp/sidekey.yaml" <<YAML
version: 1
agent: bench
listen: 127.0.0.1:$SK
admin_listen: 127.0.0.1:$SKA
audit: {file: $tmp/audit.jsonl}
upstreams: {api.test: 127.0.0.1:$UP, user.test: 127.0.0.1:$UP, mcp.test: 127.0.0.1:$UP}
credentials:
  bot: {source: env, env: BENCH_TOKEN}
  user: {source: file, file: "creds/{user}.txt"}
routes:
  - {name: claw, match: {host: api.test}, auth: claw, credential: bot}
  - {name: assistant, match: {host: user.test}, auth: assistant, credential: user}
  - {name: gateway, gateway: {prefix: /gw, upstream: "http://127.0.0.1:$UP"}, auth: claw, credential: bot}
  - name: mcp
    match: {host: mcp.test}
    auth: claw
    credential: bot
    mcp:
      tools: [{name: "get_*"}, {name: "create_*", args: {"/owner": [acme]}}, {name: "delete_*", action: deny}]
      default: deny
YAML
# The HTTPS sidekey: intercepts CONNECT api.test:443 and dials the upstream TLS listener.
cat > "$tmp/sidekey-tls.yaml" <<YAML
version: 1
agent: bench-tls
listen: 127.0.0.1:$SKT
admin_listen: 127.0.0.1:$SKTA
audit: {file: $tmp/audit-tls.jsonl}
tls: {ca_cert: $tmp/skca/ca.crt, ca_key: $tmp/skca/ca.key, upstream_roots: [$tmp/upca.crt]}
upstreams: {api.test: 127.0.0.1:$UPTLS}
credentials:
  bot: {source: env, env: BENCH_TOKEN}
routes:
  - {name: claw, match: {host: api.test}, auth: claw, credential: bot}
YAML

taskset -c 0 nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
taskset -c 1 nginx -c "$tmp/proxy.conf" -p "$tmp" & pids+=($!)
BENCH_TOKEN=$TOKEN SIDEKEY_WORKERS=1 SIDEKEY_LOG=warn taskset -c 1 "$BIN" run --config "$tmp/sidekey.yaml" 2>"$tmp/sidekey.err" & pids+=($!)
SKPID=$!
taskset -c 1 "$FLOOR" "127.0.0.1:$FL" "127.0.0.1:$UP" "$TOKEN" affinity & pids+=($!)
FLPID=$!
taskset -c 1 "$FLOOR" "127.0.0.1:$FLP" "127.0.0.1:$UP" "$TOKEN" pool & pids+=($!)
FLPPID=$!
taskset -c 1 nginx -c "$tmp/proxy-tls.conf" -p "$tmp" & pids+=($!)
BENCH_TOKEN=$TOKEN SIDEKEY_WORKERS=1 SIDEKEY_LOG=warn taskset -c 1 "$BIN" run --config "$tmp/sidekey-tls.yaml" 2>"$tmp/sidekey-tls.err" & pids+=($!)
SKTPID=$!
for i in $(seq 100); do curl -sf "http://127.0.0.1:$SKA/healthz" >/dev/null && break; sleep 0.1; done
for i in $(seq 100); do curl -sf "http://127.0.0.1:$SKTA/healthz" >/dev/null && break; sleep 0.1; done
for i in $(seq 100); do [ -s "$tmp/ngxtls.pid" ] && [ -s "$tmp/up.pid" ] && break; sleep 0.1; done
sleep 1
SK_START=$(awk '/VmRSS/ {print $2}' "/proc/$SKPID/status")

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
L_FLOOR=$(lua "/v1/x" "" floor)
# MCP: a 1 KiB tools/call, POSTed through the forward proxy and decided by a tool rule.
MCP_BODY=$(python3 -c 'import json; print(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_issue", "arguments": {"owner": "acme", "repo": "infra", "number": 42, "body": "x" * 880}}}))')
L_MCP=$(lua "http://mcp.test/mcp" "wrk.method = \"POST\"; wrk.headers[\"Host\"] = \"mcp.test\"; wrk.headers[\"Content-Type\"] = \"application/json\"; wrk.body = '$MCP_BODY'" mcp)

# Sanity: each path really injects.
curl -sf -o /dev/null "http://127.0.0.1:$NGX/v1/x"
curl -sf -o /dev/null -x "http://127.0.0.1:$SK" http://api.test/v1/x
curl -sf -o /dev/null -x "http://127.0.0.1:$SK" -H 'x-sidekey-user: alice' http://user.test/v1/x
curl -sf -o /dev/null "http://127.0.0.1:$SK/gw/v1/x"
# ... and the HTTPS paths really inject (upstream /auth says "yes" only with the token).
check_auth() { # label, curl args...
  local label=$1; shift
  local got; got=$(curl -sf "$@") || { echo "load.sh: $label: request failed" >&2; exit 1; }
  [ "$got" = yes ] || { echo "load.sh: $label: upstream did not see the injected token ($got)" >&2; exit 1; }
}
check_auth "nginx" "http://127.0.0.1:$NGX/auth"
check_auth "hyper floor" "http://127.0.0.1:$FL/auth"
check_auth "hyper floor pool" "http://127.0.0.1:$FLP/auth"
check_auth "sidekey claw" -x "http://127.0.0.1:$SK" http://api.test/auth
check_auth "sidekey mcp" -x "http://127.0.0.1:$SK" -H 'content-type: application/json' -d "$MCP_BODY" http://mcp.test/auth
check_auth "nginx TLS" --cacert "$tmp/upca.crt" --resolve "api.test:$NGXTLS:127.0.0.1" "https://api.test:$NGXTLS/auth"
check_auth "nginx TLS->TLS" --cacert "$tmp/upca.crt" --resolve "api.test:$NGXTT:127.0.0.1" "https://api.test:$NGXTT/auth"
check_auth "sidekey https" -x "http://127.0.0.1:$SKT" --cacert "$tmp/skca/ca.crt" https://api.test/auth

run() { # name port script
  taskset -c 0 wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$3" "http://127.0.0.1:$2" > "$tmp/out.$1.$r" 2>&1
}
run_tls() { # name, tls_load args... (a failed run leaves its error in the output file)
  local name=$1; shift
  taskset -c 0 "$TLS_LOAD" --conns "$CONNS" --duration "$DUR" --ca "$@" > "$tmp/out.$name.$r" 2>&1 || true
}
ngx_worker() { pgrep -P "$(cat "$tmp/$1.pid")" | head -1; }
NGXW=$(ngx_worker ngx); NGXTW=$(ngx_worker ngxtls)
# CPU used by the proxy under test during a case (core 1 busy %): if it is well under
# 100%, the case was limited by the client/upstream on core 0, not by the proxy.
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
timed() { # name, pid of the proxy under test, command...
  local name=$1 pid=$2 c0 c1 t0 t1; shift 2
  c0=$(ticks "$pid"); t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N); c1=$(ticks "$pid")
  echo "$((c1 - c0)) $HZ $t0 $t1" > "$tmp/cpu.$name.$r"
}
for r in $(seq "$ROUNDS"); do
  run direct "$UP" "$L_DIRECT"
  timed nginx "$NGXW" run nginx "$NGX" "$L_NGINX"
  timed floor "$FLPID" run floor "$FL" "$L_FLOOR"
  timed floor_pool "$FLPPID" run floor_pool "$FLP" "$L_FLOOR"
  timed claw "$SKPID" run claw "$SK" "$L_CLAW"
  timed assistant "$SKPID" run assistant "$SK" "$L_ASSIST"
  timed gateway "$SKPID" run gateway "$SK" "$L_GW"
  timed mcp "$SKPID" run mcp "$SK" "$L_MCP"
  run_tls direct_tls "$tmp/upca.crt" --mode direct --addr "127.0.0.1:$UPTLS" --sni api.test
  timed nginx_tls "$NGXTW" run_tls nginx_tls "$tmp/upca.crt" --mode direct --addr "127.0.0.1:$NGXTLS" --sni api.test
  timed nginx_tt "$NGXTW" run_tls nginx_tt "$tmp/upca.crt" --mode direct --addr "127.0.0.1:$NGXTT" --sni api.test
  timed sidekey_https "$SKTPID" run_tls sidekey_https "$tmp/skca/ca.crt" --mode connect --proxy "127.0.0.1:$SKT" --target api.test:443
done
SK_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SKPID/status")
NGX_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$NGXW/status")
SKT_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SKTPID/status")
NGXT_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$NGXTW/status")
# Idle again: sidekey returns its free heap once it has had no connection for 5-10 s.
sleep 12
SK_IDLE=$(awk '/VmRSS/ {print $2}' "/proc/$SKPID/status")
SKT_IDLE=$(awk '/VmRSS/ {print $2}' "/proc/$SKTPID/status")
AUDIT_LINES=$(wc -l < "$tmp/audit.jsonl")
AUDIT_TLS_LINES=$(wc -l < "$tmp/audit-tls.jsonl")

python3 - "$tmp" "$ROUNDS" "$SK_HWM" "$NGX_HWM" "$SK_IDLE" "$AUDIT_LINES" \
  "$SKT_HWM" "$NGXT_HWM" "$SKT_IDLE" "$AUDIT_TLS_LINES" "$SK_START" <<'PY'
import re, statistics, sys
tmp, rounds, sk_hwm, ngx_hwm, sk_idle, audit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
skt_hwm, ngxt_hwm, skt_idle, audit_tls, sk_start = (int(x) for x in sys.argv[7:12])
import os
def cpu(c):  # median proxy CPU % over the rounds, or None for the direct cases
    vals = []
    for r in range(1, rounds + 1):
        f = f"{tmp}/cpu.{c}.{r}"
        if os.path.exists(f):
            ticks, hz, t0, t1 = open(f).read().split()
            vals.append(100.0 * int(ticks) / int(hz) / (float(t1) - float(t0)))
    return statistics.median(vals) if vals else None
def cpu_cols(c, rps):  # "cpu%" and "k req per proxy CPU-second"
    u = cpu(c)
    return (f"{u:>7.0f}%{rps / (u / 100) / 1000:>10.1f}" if u else f"{'-':>8}{'-':>10}")
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    lat = {p: ms(*re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()) for p in ("50", "99")}
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    return rps, lat["50"], lat["99"], int(errs.group(1)) if errs else 0
cases = ["direct", "nginx", "floor", "floor_pool", "claw", "assistant", "gateway", "mcp"]
res = {}
for c in cases:
    runs = [parse(f"{tmp}/out.{c}.{r}") for r in range(1, rounds + 1)]
    res[c] = tuple(statistics.median(x[i] for x in runs) for i in range(3)) + (sum(x[3] for x in runs),)
d99 = res["direct"][2]
print("cpu% = proxy CPU time / wall time (core 1); k/cpu-s = thousand requests per proxy CPU-second")
print(f"{'case':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'+p99 ms':>9}{'non-2xx':>9}{'cpu%':>8}{'k/cpu-s':>10}")
for c in cases:
    rps, p50, p99, bad = res[c]
    label = {"claw": "sidekey claw", "assistant": "sidekey assistant", "gateway": "sidekey gateway", "floor": "hyper floor", "floor_pool": "hyper floor pool", "mcp": "sidekey mcp 1KiB call"}.get(c, c)
    print(f"{label:<22}{rps:>10.0f}{p50:>9.3f}{p99:>9.3f}{p99 - d99:>9.3f}{bad:>9}{cpu_cols(c, rps)}")
n = res["nginx"]
print()
for c in ("claw", "assistant", "gateway"):
    print(f"sidekey {c}/nginx: throughput {res[c][0] / n[0]:.2f}x, added p99 {(res[c][2] - d99):.3f} ms vs nginx {(n[2] - d99):.3f} ms")
m, cl = res["mcp"], res["claw"]
print(f"sidekey mcp/claw: throughput {m[0] / cl[0]:.2f}x, p99 {m[2]:.3f} ms vs {cl[2]:.3f} ms (a 1 KiB tools/call read, classified and decided by a tool rule)")
f = res["floor"]
print(f"hyper floor/nginx: throughput {f[0] / n[0]:.2f}x (the stack sidekey is built on, injecting and nothing else)")
print(f"hyper floor/hyper floor pool: throughput {f[0] / res['floor_pool'][0]:.2f}x (one upstream connection per client connection vs the pooled client)")
print(f"sidekey claw/hyper floor: throughput {res['claw'][0] / f[0]:.2f}x (the cost of identity, policy, audit, metrics, scrubbing)")
print(f"peak RSS: sidekey {sk_hwm / 1024:.1f} MiB, nginx worker {ngx_hwm / 1024:.1f} MiB; sidekey idle: {sk_start / 1024:.1f} MiB before load, {sk_idle / 1024:.1f} MiB after")
print(f"audit records written by sidekey: {audit}")

# HTTPS cases (tls_load): errors = non-2xx + I/O failures.
def parse_tls(path):
    t = open(path).read()
    m = re.search(r"tls_load: rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+) errors=(\d+)", t)
    if not m:
        print(f"{path}: no result: {t.strip()[-300:]}")
        return None
    return float(m.group(1)), float(m.group(2)), float(m.group(3)), int(m.group(4))
def suite_of(c):  # client-side leg as negotiated by tls_load, e.g. TLS13_AES_256_GCM_SHA384
    found = set()
    for r in range(1, rounds + 1):
        found.update(re.findall(r"suite=(\S+)", open(f"{tmp}/out.{c}.{r}").read()))
    return ",".join(sorted(found)) or "?"
tls_cases = [("direct_tls", "direct TLS"), ("nginx_tls", "nginx TLS"),
             ("nginx_tt", "nginx TLS->TLS"), ("sidekey_https", "sidekey https")]
tres = {}
for c, _ in tls_cases:
    runs = [x for x in (parse_tls(f"{tmp}/out.{c}.{r}") for r in range(1, rounds + 1)) if x]
    if runs:
        tres[c] = tuple(statistics.median(x[i] for x in runs) for i in range(3)) + (sum(x[3] for x in runs), len(runs))
print()
print("HTTPS (tls_load; errors = non-2xx + I/O failures; suite = client leg):")
print(f"{'case':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'+p99 ms':>9}{'errors':>9}{'cpu%':>8}{'k/cpu-s':>10}  suite")
t99 = tres["direct_tls"][2] if "direct_tls" in tres else float("nan")
for c, label in tls_cases:
    if c not in tres:
        print(f"{label:<22}{'failed':>10}")
        continue
    rps, p50, p99, bad, n = tres[c]
    note = "" if n == rounds else f"  ({n}/{rounds} runs)"
    print(f"{label:<22}{rps:>10.0f}{p50:>9.3f}{p99:>9.3f}{p99 - t99:>9.3f}{bad:>9}{cpu_cols(c, rps)}  {suite_of(c)}{note}")
print()
s = tres.get("sidekey_https")
for c, label in (("nginx_tt", "nginx TLS->TLS (same job: re-encrypts upstream)"), ("nginx_tls", "nginx TLS (plain HTTP upstream)")):
    if s and c in tres:
        n = tres[c]
        eff = ""
        if cpu("sidekey_https") and cpu(c):
            eff = f", per proxy CPU-second {(s[0] / cpu('sidekey_https')) / (n[0] / cpu(c)):.2f}x"
        print(f"sidekey https/{label}: throughput {s[0] / n[0]:.2f}x{eff}, added p99 {s[2] - t99:.3f} ms vs nginx {n[2] - t99:.3f} ms")
print(f"peak RSS (HTTPS processes): sidekey {skt_hwm / 1024:.1f} MiB, nginx worker {ngxt_hwm / 1024:.1f} MiB; sidekey idle after load {skt_idle / 1024:.1f} MiB")
print(f"audit records written by the HTTPS sidekey: {audit_tls}")
PY
