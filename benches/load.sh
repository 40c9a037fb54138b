#!/usr/bin/env bash
# Side-by-side load benchmark: sidekey vs nginx doing the same job (a reverse proxy that
# injects `Authorization: Bearer ...`), in one run on loopback.
#
#   benches/load.sh                 # DUR=6s CONNS=32 ROUNDS=3, XDUR=3s XROUNDS=3 (about 7 minutes + build)
#   The "mcp" case POSTs a 1 KiB MCP tools/call decided by a tool rule (ratio to claw).
#
# Round two, the cost curves (after the main rounds, XROUNDS rounds of XDUR each, cases
# alternating within each round; CPU per request = proxy utime+stime from /proc/PID/stat
# over the case divided by the requests wrk counted):
#   nginx+log     a second nginx proxy (1 worker, core 1, same job) that also writes one
#                 buffered JSON access-log line per request (escape=json, buffer=64k):
#                 the peer that does the same work as an auditing proxy (in the main rounds)
#   light load    ~1k req/s (wrk, 10 connections, a Lua delay() of 10 ms per request:
#                 wrk2 is not in Debian): added p50 over direct, sidekey vs nginx
#   connections   32 / 256 / 1,000 keep-alive clients, claw vs nginx: req/s, CPU per
#                 request, peak RSS (VmHWM, reset through /proc/PID/clear_refs per case,
#                 the lowest of the rounds: a case starts from what the one before left);
#                 RSS per idle connection (1,000 held open by a small Python client)
#   routes        sidekeys with 10 / 1,000 / 10,000 routes, all on the hit host with
#                 non-matching paths before the hit (so matching walks them), and one with
#                 10,000 distinct hosts before it (the host index skips them)
#   users         100,000 distinct users (x-sidekey-user from a wrk Lua counter) on an
#                 assistant route with per-user file credentials, all cached (the cache
#                 holds 100,000 entries: MAX_ENTRIES in src/credentials/mod.rs; misses
#                 during the measured rounds are counted from /metrics); memory per cached
#                 credential = (RSS after warming all users - RSS before) / 100,000
#   bodies        a 100 MiB download (upstream nginx static file, through sidekey's response
#                 scrubber) and a 100 MiB upload (a Python discard server on core 0 that reads
#                 the whole body and answers its length), curl, BODY_REPS repetitions
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
DUR=${DUR:-6s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
XDUR=${XDUR:-3s}        # each case of the cost-curve sections
XROUNDS=${XROUNDS:-3}  # a median of 3 survives one stalled round on a shared machine
BODY_REPS=${BODY_REPS:-5}
NUSERS=100000
# 1,000 clients (plus wrk's and the proxies' own descriptors) need more than 1024 fds.
[ "$(ulimit -n)" -ge 8192 ] || ulimit -n 8192

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
T0=$(date +%s)
say() { echo "load.sh: [$(( $(date +%s) - T0 )) s] $*" >&2; }
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
# The measured binary last: building a bench target also builds the sidekey binary with
# the dev-dependency features and links it to target/release/sidekey; `cargo build
# --release` (fresh or not) links the release build back in its place.
cargo build --release --quiet
BIN=$PWD/target/release/sidekey

say "built"
tmp=$(mktemp -d)
chmod 711 "$tmp"  # nginx workers (not root) serve the 100 MiB file from $tmp/www
# The 100,000 per-user credential files live on tmpfs: removing them from a busy disk
# takes minutes.
ucreds=$(mktemp -d /dev/shm/sidekey-bench-ucreds.XXXXXX 2>/dev/null || { mkdir "$tmp/ucreds" && echo "$tmp/ucreds"; })
pids=()
# KEEP=dir: keep the raw per-case outputs there (wrk/tls_load output, CPU ticks, peaks).
cleanup() { [ -z "${KEEP:-}" ] || { mkdir -p "$KEEP"; cp "$tmp"/out.* "$tmp"/cpu.* "$tmp"/hwm.* "$tmp"/body.* "$tmp"/kv "$KEEP"/ 2>/dev/null || true; }
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp" "$ucreds"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NGX=$(free_port); SK=$(free_port); SKA=$(free_port); FL=$(free_port); FLP=$(free_port)
UPTLS=$(free_port); NGXTLS=$(free_port); NGXTT=$(free_port); SKT=$(free_port); SKTA=$(free_port)
NGXL=$(free_port); DISC=$(free_port); SKU=$(free_port); SKUA=$(free_port)
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
    location /bulk/ { root $tmp/www; default_type application/octet-stream; }
    location = /auth { default_type text/plain; return 200 \$authok; } }
  server { listen 127.0.0.1:$UPTLS ssl; server_name api.test; keepalive_requests 1000000;
    ssl_certificate $tmp/leaf.crt; ssl_certificate_key $tmp/leaf.key; ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type application/json; return 200 '{"ok":true}'; }
    location = /auth { default_type text/plain; return 200 \$authok; } } }
NGINX
# The nginx proxy (core 1), and its twin nginx+log (a separate process, same job) that
# also writes one buffered JSON access-log line per request, with about the fields of
# sidekey's audit record. /bulk/ and /sink carry the 100 MiB bodies, streamed both ways
# (no temp files: proxy_request_buffering off, proxy_max_temp_file_size 0).
proxy_conf() { # name, port, access-log directives
  cat <<NGINX
worker_processes 1; daemon off; pid $tmp/$1.pid; error_log $tmp/$1.err;
events { worker_connections 4096; }
http { $3
  upstream up { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
  upstream sink { server 127.0.0.1:$DISC; }
  server { listen 127.0.0.1:$2; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Authorization "Bearer $TOKEN"; }
    location /bulk/ { proxy_pass http://up; proxy_http_version 1.1; proxy_max_temp_file_size 0;
      proxy_set_header Connection ""; proxy_set_header Authorization "Bearer $TOKEN"; }
    location = /sink { proxy_pass http://sink; proxy_http_version 1.1;
      client_max_body_size 0; proxy_request_buffering off;
      proxy_set_header Connection ""; proxy_set_header Authorization "Bearer $TOKEN"; } } }
NGINX
}
proxy_conf ngx "$NGX" "access_log off;" > "$tmp/proxy.conf"
proxy_conf ngxlog "$NGXL" "log_format audit escape=json '{\"ts\":\"\$time_iso8601\",\"request_id\":\"\$request_id\",\"agent\":\"bench\",\"client\":\"\$remote_addr\",\"method\":\"\$request_method\",\"scheme\":\"\$scheme\",\"host\":\"\$host\",\"path\":\"\$uri\",\"status\":\$status,\"upstream_status\":\"\$upstream_status\",\"upstream_s\":\"\$upstream_response_time\",\"total_s\":\$request_time,\"bytes_in\":\$request_length,\"bytes_out\":\$bytes_sent}';
  access_log $tmp/ngx-access.jsonl audit buffer=64k;" > "$tmp/proxy-log.conf"
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
limits: {max_connections: 4096}
upstreams: {api.test: 127.0.0.1:$UP, user.test: 127.0.0.1:$UP, mcp.test: 127.0.0.1:$UP, sink.test: 127.0.0.1:$DISC}
credentials:
  bot: {source: env, env: BENCH_TOKEN}
  user: {source: file, file: "creds/{user}.txt"}
routes:
  - {name: claw, match: {host: api.test}, auth: claw, credential: bot}
  - {name: assistant, match: {host: user.test}, auth: assistant, credential: user}
  - {name: gateway, gateway: {prefix: /gw, upstream: "http://127.0.0.1:$UP"}, auth: claw, credential: bot}
  - {name: sink, match: {host: sink.test}, auth: claw, credential: bot}
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
# The routes sidekeys: N routes in front of the hit. "walk": N-1 routes on the hit host
# whose paths do not match, so every request tries them all; "hosts": N-1 routes on other
# hosts, which the host index skips.
RCASES="walk10 walk1000 walk10000 hosts10000"
declare -A RPORT RAPORT RPID
for c in $RCASES; do
  RPORT[$c]=$(free_port); RAPORT[$c]=$(free_port)
  python3 - "$c" "${RPORT[$c]}" "${RAPORT[$c]}" "$tmp" "$UP" > "$tmp/sidekey-$c.yaml" <<'PY'
import re, sys
case, port, admin, tmp, up = sys.argv[1:]
kind, n = re.fullmatch(r"([a-z]+)(\d+)", case).groups()
print(f"version: 1\nagent: bench-{case}\nlisten: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}")
print(f"audit: {{file: {tmp}/audit-{case}.jsonl}}\nupstreams: {{api.test: 127.0.0.1:{up}}}")
print("credentials:\n  bot: {source: env, env: BENCH_TOKEN}\nroutes:")
for i in range(int(n) - 1):
    m = f"{{host: api.test, path: \"/r{i}/*\"}}" if kind == "walk" else f"{{host: h{i}.test}}"
    print(f"  - {{name: r{i}, match: {m}, auth: claw, credential: bot}}")
print("  - {name: hit, match: {host: api.test}, auth: claw, credential: bot}")
PY
done
# The users sidekey: an assistant route whose per-user file credential is cached for an
# hour (the measured rounds must not outlive cache_ttl), one file per user.
mkdir -p "$tmp/www/bulk"
python3 - "$ucreds" "$NUSERS" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{d}/u{i}.txt", "w") as f:
        f.write(f"user-token-u{i}-0123456789abcdef\n")
PY
cat > "$tmp/sidekey-users.yaml" <<YAML
version: 1
agent: bench-users
listen: 127.0.0.1:$SKU
admin_listen: 127.0.0.1:$SKUA
audit: {file: $tmp/audit-users.jsonl}
upstreams: {users.test: 127.0.0.1:$UP}
credentials:
  user: {source: file, file: "$ucreds/{user}.txt", cache_ttl: 1h}
routes:
  - {name: assistant, match: {host: users.test}, auth: assistant, credential: user}
YAML
head -c 100M /dev/urandom > "$tmp/www/bulk/big.bin"
chmod -R a+rX "$tmp/www"
BIG=$(stat -c %s "$tmp/www/bulk/big.bin")
# The upload sink (core 0): reads each request body to its end (Content-Length or
# chunked), then answers 200 with the number of bytes read.
cat > "$tmp/sink.py" <<'PY'
import socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            headers = {}
            while True:
                h = self.rfile.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            n = 0
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:  # then trailers, up to an empty line
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    n += size
                    left = size
                    while left:
                        chunk = self.rfile.read(min(left, 1 << 20))
                        if not chunk:
                            return
                        left -= len(chunk)
                    self.rfile.readline()
            else:
                left = int(headers.get("content-length", "0"))
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        return
                    left -= len(chunk)
                    n += len(chunk)
            body = str(n).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            self.wfile.flush()
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY

say "configs written"
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
taskset -c 1 nginx -c "$tmp/proxy-log.conf" -p "$tmp" & pids+=($!)
taskset -c 0 python3 "$tmp/sink.py" "$DISC" & pids+=($!)
BENCH_TOKEN=$TOKEN SIDEKEY_WORKERS=1 SIDEKEY_LOG=warn taskset -c 1 "$BIN" run --config "$tmp/sidekey-users.yaml" 2>"$tmp/sidekey-users.err" & pids+=($!)
SKUPID=$!
for c in $RCASES; do
  BENCH_TOKEN=$TOKEN SIDEKEY_WORKERS=1 SIDEKEY_LOG=warn taskset -c 1 "$BIN" run --config "$tmp/sidekey-$c.yaml" 2>"$tmp/sidekey-$c.err" & pids+=($!)
  RPID[$c]=$!
done
up() { # url: wait until it answers
  for i in $(seq 300); do curl -sf -o /dev/null "$1" && return; sleep 0.1; done
  echo "load.sh: $1 did not come up" >&2; exit 1
}
up "http://127.0.0.1:$SKA/healthz"; up "http://127.0.0.1:$SKTA/healthz"; up "http://127.0.0.1:$SKUA/healthz"
for c in $RCASES; do up "http://127.0.0.1:${RAPORT[$c]}/healthz"; done
for i in $(seq 100); do [ -s "$tmp/ngxtls.pid" ] && [ -s "$tmp/up.pid" ] && [ -s "$tmp/ngxlog.pid" ] && break; sleep 0.1; done
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
check_auth "nginx+log" "http://127.0.0.1:$NGXL/auth"
for c in $RCASES; do check_auth "sidekey $c" -x "http://127.0.0.1:${RPORT[$c]}" http://api.test/auth; done
curl -sf -o /dev/null -x "http://127.0.0.1:$SKU" -H 'x-sidekey-user: u1' http://users.test/v1/x
check_auth "hyper floor" "http://127.0.0.1:$FL/auth"
check_auth "hyper floor pool" "http://127.0.0.1:$FLP/auth"
check_auth "sidekey claw" -x "http://127.0.0.1:$SK" http://api.test/auth
check_auth "sidekey mcp" -x "http://127.0.0.1:$SK" -H 'content-type: application/json' -d "$MCP_BODY" http://mcp.test/auth
check_auth "nginx TLS" --cacert "$tmp/upca.crt" --resolve "api.test:$NGXTLS:127.0.0.1" "https://api.test:$NGXTLS/auth"
check_auth "nginx TLS->TLS" --cacert "$tmp/upca.crt" --resolve "api.test:$NGXTT:127.0.0.1" "https://api.test:$NGXTT/auth"
check_auth "sidekey https" -x "http://127.0.0.1:$SKT" --cacert "$tmp/skca/ca.crt" https://api.test/auth

run() { # name port script [connections [duration]]
  taskset -c 0 wrk -t1 -c"${4:-$CONNS}" -d"${5:-$DUR}" --latency -s "$3" "http://127.0.0.1:$2" > "$tmp/out.$1.$r" 2>&1
}
run_tls() { # name, tls_load args... (a failed run leaves its error in the output file)
  local name=$1; shift
  taskset -c 0 "$TLS_LOAD" --conns "$CONNS" --duration "$DUR" --ca "$@" > "$tmp/out.$name.$r" 2>&1 || true
}
ngx_worker() { pgrep -P "$(cat "$tmp/$1.pid")" | head -1; }
NGXW=$(ngx_worker ngx); NGXTW=$(ngx_worker ngxtls); NGXLW=$(ngx_worker ngxlog)
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
# ---- Round two: the cost curves ------------------------------------------------------
kv() { echo "$1 $2" >> "$tmp/kv"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
reset_hwm() { echo 5 > "/proc/$1/clear_refs"; }  # VmHWM restarts from the current RSS
peak() { # name pid command...: a timed case whose peak RSS is its own
  local name=$1 pid=$2; shift 2
  reset_hwm "$pid"
  timed "$name" "$pid" "$@"
  hwm "$pid" > "$tmp/hwm.$name.$r"
}
# Light steady load, ~1k req/s: 10 connections, each waiting 10 ms before each request.
throttle='function delay() return 10 end'
L_LDIRECT=$(lua "/v1/x" "$throttle" ldirect)
L_LNGINX=$(lua "/v1/x" "$throttle" lnginx)
L_LCLAW=$(lua "http://api.test/v1/x" "wrk.headers[\"Host\"] = \"api.test\"; $throttle" lclaw)
# 100,000 users: a counter picks the user of each request; the warm-up pass stops after
# one request per user (wrk exits once NUSERS responses came back).
users_lua() { # name, stop after NUSERS responses (1/0), users
  cat > "$tmp/$1.lua" <<LUA
local i, n, done = math.random(0, $3 - 1), $3, 0
local h = {["Host"] = "users.test"}
request = function()
  h["x-sidekey-user"] = "u" .. (i % n)
  i = i + 1
  return wrk.format("GET", "http://users.test/v1/x", h)
end
LUA
  if [ "$2" = 1 ]; then
    sed -i 's/^local i, n, done = .*/local i, n, done = 0, '"$3"', 0/' "$tmp/$1.lua"
    # wrk.thread:stop() would still wait out -d: exit instead, saying how many were done.
    echo 'response = function() done = done + 1; if done >= n then io.write(done .. " requests in (warm-up, stopped by its script)\n"); os.exit(0) end end' >> "$tmp/$1.lua"
  fi
  echo "$tmp/$1.lua"
}
L_UWARM=$(users_lua uwarm 1 "$NUSERS")
L_UONE=$(users_lua uone 0 1)
L_USERS=$(users_lua users 0 "$NUSERS")
misses() { # file-credential cache misses so far, from the users sidekey's /metrics
  curl -sf "http://127.0.0.1:$SKUA/metrics" | awk '/^sidekey_credential_lookups_total/ && /result="miss"/ {s += $NF} END {print s + 0}'
}
# Holds N keep-alive connections open after one request on each (sent one at a time,
# so the proxy's upstream pool does not grow); prints "ready N-ok" and waits to be killed.
cat > "$tmp/idle.py" <<'PY'
import socket, sys, time
port, n, target, host = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
req = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
socks, ok = [], 0
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += s.recv(65536)
    ok += head.startswith(b"HTTP/1.1 200")
    socks.append(s)
print(f"ready {ok}", flush=True)
time.sleep(300)
PY
idle_conns() { # name pid port target host
  local before after ipid
  before=$(rss "$2")
  taskset -c 0 python3 "$tmp/idle.py" "$3" 1000 "$4" "$5" > "$tmp/idle.$1" 2>&1 & ipid=$!
  for i in $(seq 300); do grep -q ready "$tmp/idle.$1" && break; sleep 0.1; done
  sleep 1
  after=$(rss "$2")
  kill "$ipid"; wait "$ipid" 2>/dev/null || true
  kv "idle_$1" "$before $after $(awk '/ready/ {print $2}' "$tmp/idle.$1")"
}
# RSS per idle connection, measured before any load (after the sanity requests above
# touched the request path), so that freed heap from earlier load does not absorb it;
# the peaks of the main rounds are their own (VmHWM reset after this).
say "idle connections"
idle_conns sidekey "$SKPID" "$SK" http://api.test/v1/x api.test
idle_conns nginx "$NGXW" "$NGX" /v1/x 127.0.0.1
sleep 11  # sidekey returns the freed heap once it has had no connection for 5-10 s
reset_hwm "$SKPID"; reset_hwm "$NGXW"
say "main rounds ($ROUNDS rounds of $DUR per case)"
for r in $(seq "$ROUNDS"); do
  run direct "$UP" "$L_DIRECT"
  timed nginx "$NGXW" run nginx "$NGX" "$L_NGINX"
  timed nginx_log "$NGXLW" run nginx_log "$NGXL" "$L_NGINX"
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

say "main rounds done; cost curves ($XROUNDS rounds of $XDUR per case)"
for r in $(seq "$XROUNDS"); do
  run ldirect "$UP" "$L_LDIRECT" 10 "$XDUR"
  timed lnginx "$NGXW" run lnginx "$NGX" "$L_LNGINX" 10 "$XDUR"
  timed lnginx_log "$NGXLW" run lnginx_log "$NGXL" "$L_LNGINX" 10 "$XDUR"
  timed lclaw "$SKPID" run lclaw "$SK" "$L_LCLAW" 10 "$XDUR"
  for c in 32 256 1000; do
    peak "c${c}_nginx" "$NGXW" run "c${c}_nginx" "$NGX" "$L_NGINX" "$c" "$XDUR"
    peak "c${c}_claw" "$SKPID" run "c${c}_claw" "$SK" "$L_CLAW" "$c" "$XDUR"
  done
  for c in $RCASES; do
    peak "$c" "${RPID[$c]}" run "$c" "${RPORT[$c]}" "$L_CLAW" "$CONNS" "$XDUR"
  done
done

say "bodies"
# Bodies: BODY_REPS x (download, upload) of 100 MiB, direct / nginx / sidekey alternating.
body() { # name pid(0 = none) curl args...
  local name=$1 pid=$2 c0=0 c1=0 out dst=$tmp/body.resp; shift 2
  [ "${name#down}" = "$name" ] || dst=/dev/null
  : > "$tmp/body.resp"
  [ "$pid" = 0 ] || c0=$(ticks "$pid")
  out=$(taskset -c 0 curl -sS -o "$dst" -H 'Expect:' -w '%{http_code} %{size_download} %{size_upload} %{time_total}' "$@") || out="000 0 0 0"
  [ "$pid" = 0 ] || c1=$(ticks "$pid")
  echo "$out $((c1 - c0)) $HZ $(head -c 40 "$tmp/body.resp" | tr -c '0-9' ' ' | awk '{print $1 + 0}')" >> "$tmp/body.$name"
}
for r in $(seq "$BODY_REPS"); do
  body down_direct 0 "http://127.0.0.1:$UP/bulk/big.bin"
  body down_nginx "$NGXW" "http://127.0.0.1:$NGX/bulk/big.bin"
  body down_sidekey "$SKPID" -x "http://127.0.0.1:$SK" http://api.test/bulk/big.bin
  body up_direct 0 -X POST -T "$tmp/www/bulk/big.bin" "http://127.0.0.1:$DISC/sink"
  body up_nginx "$NGXW" -X POST -T "$tmp/www/bulk/big.bin" "http://127.0.0.1:$NGX/sink"
  body up_sidekey "$SKPID" -X POST -T "$tmp/www/bulk/big.bin" -x "http://127.0.0.1:$SK" http://sink.test/sink
done
say "100,000 users"
# 100,000 users: warm the stack with one user, then one request per user, then measure.
r=0
run uone "$SKU" "$L_UONE" "$CONNS" 1s
sleep 1
U_BEFORE=$(rss "$SKUPID"); M0=$(misses)
reset_hwm "$SKUPID"
timed uwarm "$SKUPID" run uwarm "$SKU" "$L_UWARM" "$CONNS" 60s
sleep 1
U_AFTER=$(rss "$SKUPID"); M1=$(misses)
for r in $(seq "$XROUNDS"); do
  peak users "$SKUPID" run users "$SKU" "$L_USERS" "$CONNS" "$XDUR"
done
U_END=$(rss "$SKUPID"); M2=$(misses)
kv users_rss "$U_BEFORE $U_AFTER $U_END"
kv users_misses "$M0 $M1 $M2"

kv big "$BIG"; kv xrounds "$XROUNDS"
kv ngx_log_lines "$(wc -l < "$tmp/ngx-access.jsonl")"

say "done measuring"
python3 - "$tmp" "$ROUNDS" "$SK_HWM" "$NGX_HWM" "$SK_IDLE" "$AUDIT_LINES" \
  "$SKT_HWM" "$NGXT_HWM" "$SKT_IDLE" "$AUDIT_TLS_LINES" "$SK_START" <<'PY'
import re, statistics, sys
tmp, rounds, sk_hwm, ngx_hwm, sk_idle, audit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
skt_hwm, ngxt_hwm, skt_idle, audit_tls, sk_start = (int(x) for x in sys.argv[7:12])
import os
def cpu(c, rounds=rounds):  # median proxy CPU % over the rounds, or None for the direct cases
    vals = []
    for r in range(1, rounds + 1):
        f = f"{tmp}/cpu.{c}.{r}"
        if os.path.exists(f):
            ticks, hz, t0, t1 = open(f).read().split()
            vals.append(100.0 * int(ticks) / int(hz) / (float(t1) - float(t0)))
    return statistics.median(vals) if vals else None
def requests(path):  # requests completed, as counted by wrk or tls_load
    m = re.search(r"(\d+) requests in|requests=(\d+)", open(path).read())
    return int(m.group(1) or m.group(2)) if m else 0
def us_req(c, rounds=rounds):  # median proxy CPU microseconds per request, or None
    vals = []
    for r in range(1, rounds + 1):
        f, o = f"{tmp}/cpu.{c}.{r}", f"{tmp}/out.{c}.{r}"
        if os.path.exists(f) and os.path.exists(o) and requests(o):
            ticks, hz = open(f).read().split()[:2]
            vals.append(1e6 * int(ticks) / int(hz) / requests(o))
    return statistics.median(vals) if vals else None
def cpu_cols(c, rps):  # "cpu%", "k req per proxy CPU-second" and "CPU us per request"
    u, us = cpu(c), us_req(c)
    return (f"{u:>7.0f}%{rps / (u / 100) / 1000:>10.1f}{us:>8.1f}" if u and us else f"{'-':>8}{'-':>10}{'-':>8}")
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    lat = {p: ms(*re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()) for p in ("50", "99")}
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    return rps, lat["50"], lat["99"], int(errs.group(1)) if errs else 0
cases = ["direct", "nginx", "nginx_log", "floor", "floor_pool", "claw", "assistant", "gateway", "mcp"]
res = {}
for c in cases:
    runs = [parse(f"{tmp}/out.{c}.{r}") for r in range(1, rounds + 1)]
    res[c] = tuple(statistics.median(x[i] for x in runs) for i in range(3)) + (sum(x[3] for x in runs),)
d99 = res["direct"][2]
print("cpu% = proxy CPU time / wall time (core 1); k/cpu-s = thousand requests per proxy CPU-second;")
print("us/req = proxy CPU microseconds (utime+stime) per request")
print(f"{'case':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'+p99 ms':>9}{'non-2xx':>9}{'cpu%':>8}{'k/cpu-s':>10}{'us/req':>8}")
for c in cases:
    rps, p50, p99, bad = res[c]
    label = {"nginx_log": "nginx+log (JSON)", "claw": "sidekey claw", "assistant": "sidekey assistant", "gateway": "sidekey gateway", "floor": "hyper floor", "floor_pool": "hyper floor pool", "mcp": "sidekey mcp 1KiB call"}.get(c, c)
    print(f"{label:<22}{rps:>10.0f}{p50:>9.3f}{p99:>9.3f}{p99 - d99:>9.3f}{bad:>9}{cpu_cols(c, rps)}")
n = res["nginx"]
print()
for c in ("claw", "assistant", "gateway"):
    print(f"sidekey {c}/nginx: throughput {res[c][0] / n[0]:.2f}x, added p99 {(res[c][2] - d99):.3f} ms vs nginx {(n[2] - d99):.3f} ms")
nl = res["nginx_log"]
for c in ("claw", "assistant", "gateway", "mcp"):
    us, unl, un = us_req(c), us_req("nginx_log"), us_req("nginx")
    if us and unl and un:
        print(f"sidekey {c}/nginx+log: throughput {res[c][0] / nl[0]:.2f}x, CPU per request {us / unl:.2f}x (vs nginx {us / un:.2f}x)")
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
print(f"{'case':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'+p99 ms':>9}{'errors':>9}{'cpu%':>8}{'k/cpu-s':>10}{'us/req':>8}  suite")
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

# ---- Round two: the cost curves -------------------------------------------------------
kv = {}
for line in open(f"{tmp}/kv"):
    k, _, v = line.strip().partition(" ")
    kv[k] = v.split()
xr = int(kv["xrounds"][0])
def xres(c, rounds=xr):  # medians over the rounds that produced a result: rps, p50, p99, non-2xx
    runs = []
    for r in range(1, rounds + 1):
        try:
            runs.append(parse(f"{tmp}/out.{c}.{r}"))
        except (OSError, AttributeError):
            pass
    if not runs:
        return None
    return tuple(statistics.median(x[i] for x in runs) for i in range(3)) + (sum(x[3] for x in runs),)
def xhwm(c, rounds=xr):  # peak RSS (MiB) of a case: the lowest of its rounds' peaks, since
    # a case starts from what the case before it left resident (round 2's 32 connections
    # follow round 1's 1,000, whose buffers glibc keeps)
    vals = [int(open(f).read()) for f in (f"{tmp}/hwm.{c}.{r}" for r in range(1, rounds + 1)) if os.path.exists(f)]
    return min(vals) / 1024 if vals else None
def f1(v, fmt=".1f"):
    return "-" if v is None else format(v, fmt)
summary = []  # (section, case, throughput, cpu us/req, vs nginx+log, vs nginx, memory, note)
unl, un = us_req("nginx_log"), us_req("nginx")
def ratio(u, base):
    return f"{u / base:.2f}x" if u and base else "-"
print()
print(f"Round two: cost curves ({xr} rounds per case, medians; us/req = proxy CPU microseconds per request)")
for c, label in (("nginx", "nginx"), ("nginx_log", "nginx+log (JSON access log)"), ("floor", "hyper floor"), ("floor_pool", "hyper floor pool"),
                 ("claw", "sidekey claw"), ("assistant", "sidekey assistant"), ("gateway", "sidekey gateway"), ("mcp", "sidekey mcp 1KiB call")):
    u = us_req(c)
    summary.append(("CPU per request, 32 conns", label, f"{res[c][0]:,.0f} req/s", f1(u), ratio(u, unl), ratio(u, un), "", ""))
print(f"nginx+log access-log lines written: {kv['ngx_log_lines'][0]} (the last <64 KiB may still sit in its buffer)")

print()
print("Light steady load (wrk, 10 connections, delay() 10 ms per request):")
print(f"{'case':<22}{'req/s':>10}{'p50 ms':>9}{'+p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'us/req':>8}")
ld = xres("ldirect")
for c, label in (("ldirect", "direct"), ("lnginx", "nginx"), ("lnginx_log", "nginx+log"), ("lclaw", "sidekey claw")):
    x = xres(c)
    if not x or not ld:
        print(f"{label:<22}{'failed':>10}")
        continue
    print(f"{label:<22}{x[0]:>10.0f}{x[1]:>9.3f}{x[1] - ld[1]:>9.3f}{x[2]:>9.3f}{x[3]:>9}{f1(us_req(c, xr)):>8}")
    if c != "ldirect":
        summary.append(("light load ~1k req/s", label, f"{x[0]:,.0f} req/s", f1(us_req(c, xr)), "", "", "", f"p50 +{(x[1] - ld[1]) * 1000:.0f} us over direct ({ld[1] * 1000:.0f} us)"))

print()
print("Connections (keep-alive clients, claw vs nginx; peak = VmHWM within the case, lowest of the rounds):")
print(f"{'conns':>6} {'case':<16}{'req/s':>10}{'p99 ms':>9}{'non-2xx':>9}{'cpu%':>8}{'us/req':>8}{'peak MiB':>10}")
for n in (32, 256, 1000):
    for p, label in (("nginx", "nginx"), ("claw", "sidekey claw")):
        c = f"c{n}_{p}"
        x = xres(c)
        if not x:
            print(f"{n:>6} {label:<16}{'failed':>10}")
            summary.append((f"{n} connections", label, "failed", "", "", "", "", ""))
            continue
        u = us_req(c, xr)
        print(f"{n:>6} {label:<16}{x[0]:>10.0f}{x[2]:>9.3f}{x[3]:>9}{f1(cpu(c, xr), '.0f'):>7}%{f1(u):>8}{f1(xhwm(c)):>10}")
        summary.append((f"{n} connections", label, f"{x[0]:,.0f} req/s", f1(u), "", ratio(u, us_req(f"c{n}_nginx", xr)) if p == "claw" else "", f"peak {f1(xhwm(c))} MiB", ""))
for p, label in (("sidekey", "sidekey"), ("nginx", "nginx worker")):
    v = kv.get(f"idle_{p}")
    if not v or len(v) < 3:
        print(f"idle connections, {label}: failed")
        continue
    before, after, ok = int(v[0]), int(v[1]), int(v[2])
    per = (after - before) / 1000
    print(f"1,000 idle keep-alive connections, {label}: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, {per:.1f} KiB per connection ({ok}/1000 requests answered 200)")
    summary.append(("1,000 idle connections", label, "", "", "", "", f"{per:.1f} KiB/conn", f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB"))

print()
print("Routes (claw, 32 connections; walkN = N-1 non-matching paths on the hit host first, hostsN = N-1 other hosts first):")
print(f"{'case':<14}{'req/s':>10}{'p99 ms':>9}{'non-2xx':>9}{'cpu%':>8}{'us/req':>8}{'peak MiB':>10}")
w10 = us_req("walk10", xr)
for c in ("walk10", "walk1000", "walk10000", "hosts10000"):
    x = xres(c)
    if not x:
        print(f"{c:<14}{'failed':>10}")
        summary.append(("routes", c, "failed", "", "", "", "", ""))
        continue
    u = us_req(c, xr)
    print(f"{c:<14}{x[0]:>10.0f}{x[2]:>9.3f}{x[3]:>9}{f1(cpu(c, xr), '.0f'):>7}%{f1(u):>8}{f1(xhwm(c)):>10}")
    n = int(re.search(r"\d+", c).group())
    kind = "routes, all on the hit host" if c.startswith("walk") else "routes on other hosts"
    summary.append(("routes", f"sidekey, {n:,} {kind}", f"{x[0]:,.0f} req/s", f1(u), ratio(u, unl), ratio(u, un), f"peak {f1(xhwm(c))} MiB", f"CPU {ratio(u, w10)} of 10 routes"))

print()
ub, ua, ue = (int(x) for x in kv["users_rss"])
m0, m1, m2 = (int(x) for x in kv["users_misses"])
nusers = 100000
wreq = requests(f"{tmp}/out.uwarm.0") if os.path.exists(f"{tmp}/out.uwarm.0") else 0
x = xres("users")
u = us_req("users", xr)
per_cred = (ua - ub) * 1024 / nusers
print(f"100,000 users (assistant route, per-user file credential, cache_ttl 1h; the credential cache holds 100,000 entries):")
wus = None
if wreq and os.path.exists(f"{tmp}/cpu.uwarm.0"):
    t, hz = open(f"{tmp}/cpu.uwarm.0").read().split()[:2]
    wus = 1e6 * int(t) / int(hz) / wreq
print(f"  warm-up: {wreq} requests, {f1(wus)} us/req, {m1 - m0} cache misses (one file read per new user); RSS {ub / 1024:.1f} -> {ua / 1024:.1f} MiB = {per_cred:.0f} bytes per cached credential")
if x:
    print(f"  measured: {x[0]:.0f} req/s, p99 {x[2]:.3f} ms, non-2xx {x[3]}, {f1(u)} us/req, peak RSS {f1(xhwm('users'))} MiB, RSS at the end {ue / 1024:.1f} MiB, cache misses {m2 - m1} (0 = every user stayed cached)")
    summary.append(("100,000 users", "sidekey assistant, 100k cached users", f"{x[0]:,.0f} req/s", f1(u), ratio(u, unl), ratio(u, un), f"peak {f1(xhwm('users'))} MiB; {per_cred:.0f} B per cached credential", f"{m2 - m1} cache misses while measured"))
else:
    print("  measured: failed")

print()
big = int(kv["big"][0]); mib = big / 1048576
print(f"Bodies ({mib:.0f} MiB, curl on core 0; MiB per CPU-s = MiB moved / proxy CPU-seconds over all repetitions):")
print(f"{'case':<22}{'MiB/s':>9}{'MiB/cpu-s':>11}{'reps ok':>9}")
for d, dl in (("down", "download"), ("up", "upload")):
    for p, label in (("direct", "direct"), ("nginx", "nginx"), ("sidekey", "sidekey")):
        f = f"{tmp}/body.{d}_{p}"
        rows = [l.split() for l in open(f)] if os.path.exists(f) else []
        good = [r for r in rows if r[0] == "200" and int(float(r[1] if d == "down" else r[2])) == big and (d == "down" or int(r[6]) == big)]
        name = f"{dl} {label}"
        if not good:
            print(f"{name:<22}{'failed':>9}  {rows[:1]}")
            summary.append(("100 MiB bodies", name, "failed", "", "", "", "", ""))
            continue
        rate = statistics.median(mib / float(r[3]) for r in good)
        cpu_s = sum(int(r[4]) / int(r[5]) for r in good)
        per = f"{mib * len(good) / cpu_s:.0f}" if p != "direct" and cpu_s else "-"
        print(f"{name:<22}{rate:>9.0f}{per:>11}{len(good):>6}/{len(rows)}")
        summary.append(("100 MiB bodies", name, f"{rate:,.0f} MiB/s", "", "", "", "", f"{per} MiB per proxy CPU-s" if per != "-" else ""))

for c, label in (("nginx_tls", "nginx TLS (plain upstream)"), ("nginx_tt", "nginx TLS->TLS"), ("sidekey_https", "sidekey https")):
    if c in tres:
        u = us_req(c)
        note = f"CPU per request {ratio(u, us_req('nginx_tt'))} nginx TLS->TLS" if c == "sidekey_https" else ""
        summary.append(("HTTPS, 32 conns", label, f"{tres[c][0]:,.0f} req/s", f1(u), "", "", "", note))

print()
print("## Summary (CPU = proxy CPU microseconds per request; ratios are of CPU per request)")
print()
print("| section | case | throughput | CPU us/req | vs nginx+log | vs nginx | memory | note |")
print("|---|---|---|---|---|---|---|---|")
for row in summary:
    print("| " + " | ".join(row) + " |")
PY
