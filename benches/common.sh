# Shared set-up of the small bench scripts (sourced, not run): a temp dir and the
# processes started in it, both cleaned up on exit; free ports; the fast upstream (an
# nginx answering `{"ok":true}`, and at /auth whether the bench token was injected);
# the one-route claw sidekey config; waiting for readiness; CPU ticks of a process.
#
#   . benches/common.sh            (after `cd` to the repository root)
#   . "$(dirname "$0")/common.sh"  (from a script that stays where it was called)

BENCH_TOKEN_VALUE=bench-token-0123456789abcdef

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }

# Installs the Debian packages named (command:package pairs) whose command is missing.
need_debian() {
  local missing=() pair
  for pair in "$@"; do need "${pair%%:*}" || missing+=("${pair#*:}"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# upstream_nginx PORT CORE: the fast upstream, one worker pinned to CORE.
upstream_nginx() {
  cat > "$tmp/upstream.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/up.pid; error_log $tmp/up.err;
events { worker_connections 4096; }
http { access_log off;
  map \$http_authorization \$authok { "Bearer $BENCH_TOKEN_VALUE" yes; default no; }
  server { listen 127.0.0.1:$1; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"ok":true}'; }
    location = /auth { default_type text/plain; return 200 \$authok; } } }
NGINX
  taskset -c "$2" nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!)
}

# claw_yaml FILE LISTEN ADMIN UPSTREAM: a sidekey config with one claw route for
# api.test (dialled at 127.0.0.1:UPSTREAM), its credential from $BENCH_TOKEN.
claw_yaml() {
  cat > "$1" <<YAML
version: 1
agent: bench
listen: 127.0.0.1:$2
admin_listen: 127.0.0.1:$3
audit: {file: $1.audit.jsonl}
upstreams: {api.test: 127.0.0.1:$4}
credentials:
  bot: {source: env, env: BENCH_TOKEN}
routes:
  - {name: claw, match: {host: api.test}, auth: claw, credential: bot}
YAML
}

# wait_ready ADMIN_PORT: until sidekey's /healthz answers (10 s at most).
wait_ready() {
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "sidekey on admin port $1 did not become ready" >&2
  return 1
}

# ticks PID: user + system CPU ticks the process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
