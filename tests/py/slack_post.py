"""The official Slack SDK posting a message through sidekey, holding no token.

    slack_post.py --proxy http://127.0.0.1:PORT --ca ca.crt [--channel C1] [--text hi]

Prints one JSON line with what the SDK returned; exit 1 if the SDK raised.
"""
import argparse
import json
import ssl
import sys

from slack_sdk import WebClient


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--proxy", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--channel", default="C1")
    p.add_argument("--text", default="hi")
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)
    client = WebClient(token=None, proxy=a.proxy, ssl=ctx, timeout=60)
    try:
        resp = client.chat_postMessage(channel=a.channel, text=a.text)
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(
        json.dumps(
            {
                "ok": resp["ok"],
                "status": resp.status_code,
                "channel": resp.get("channel"),
                "ts": resp.get("ts"),
                "text": (resp.get("message") or {}).get("text"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
