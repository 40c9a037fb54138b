#!/usr/bin/env bash
# Run one example agent through sidekey against the local API stand-ins:
#
#   examples/run.sh python      # slack_sdk, notion-client, PyGithub (+ requests, httpx)
#   examples/run.sh node        # @notionhq/client + fetch through undici's EnvHttpProxyAgent
#   examples/run.sh langgraph   # a LangGraph agent with a scripted chat model
#
# Needs `sidekey` on PATH (or SIDEKEY=path), Python with the packages of
# examples/requirements.txt (PYTHON=path), and for node: npm. Everything it creates
# lives in examples/.state/ (sidekey's CA, the stand-ins' CA, alice's demo token).
set -euo pipefail
cd "$(dirname "$0")"
SIDEKEY=${SIDEKEY:-sidekey}
PYTHON=${PYTHON:-python3}
example=${1:?usage: examples/run.sh python|node|langgraph}

mkdir -p .state/tokens/alice
[ -f .state/ca/ca.crt ] || "$SIDEKEY" ca init --out .state/ca >/dev/null
(umask 077 && printf '%s' "ntn_demo_token_of_alice" > .state/tokens/alice/notion)
export SLACK_BOT_TOKEN=xoxb-demo-bot-token GITHUB_TOKEN=ghs_demo_service_token

"$PYTHON" standins/apis.py --dir .state/standins --port 9443 > .state/standins.log &
standins=$!
trap 'kill $standins 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening .state/standins.log 2>/dev/null && break; sleep 0.1; done

case "$example" in
  python) cmd=("$PYTHON" python/agent.py) ;;
  langgraph) cmd=("$PYTHON" langgraph/agent.py) ;;
  node) npm ci --prefix node --no-audit --no-fund --silent; cmd=(node node/agent.mjs) ;;
  *) echo "unknown example: $example" >&2; exit 2 ;;
esac
"$SIDEKEY" run --config sidekey.yaml --user alice -- "${cmd[@]}"
