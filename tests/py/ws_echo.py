"""WebSocket echo with the `websockets` sync client: sends one text message, reads the
reply, closes cleanly.

    ws_echo.py [--proxy http://127.0.0.1:PORT] [--ca ca.crt] [--message hello] URL

URL is wss://... (through --proxy, trusting --ca) or ws://... (direct, e.g. sidekey's
gateway). Prints one JSON line; exit 1 on any failure.
"""
import argparse
import json
import ssl
import sys

from websockets.sync.client import connect


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--proxy")
    p.add_argument("--ca")
    p.add_argument("--message", default="hello over websocket")
    p.add_argument("url")
    a = p.parse_args()
    kwargs = {"proxy": a.proxy, "open_timeout": 60, "close_timeout": 30}
    if a.url.startswith("wss://"):
        if not a.ca:
            print(json.dumps({"error": "--ca is required for wss://"}))
            return 1
        kwargs["ssl"] = ssl.create_default_context(cafile=a.ca)
    try:
        with connect(a.url, **kwargs) as ws:
            ws.send(a.message)
            reply = ws.recv(timeout=60)
            status = ws.response.status_code
            accept = ws.response.headers.get("Sec-WebSocket-Accept")
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(
        json.dumps(
            {
                "echo": reply if isinstance(reply, str) else reply.decode("utf-8", "replace"),
                "status": status,
                "accept": accept,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
