"""Reads a server-sent event stream with httpx through an HTTPS proxy.

    sse_stream.py --proxy http://127.0.0.1:PORT --ca ca.crt [--http2] URL

Prints one JSON line per event as it arrives ({"event": DATA, "http_version": ...}),
then a final line {"done": true, "events": [...], "status": N}. Exit 1 on a client error
or a non-200 status.
"""
import argparse
import json
import ssl
import sys

import httpx


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--proxy", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--http2", action="store_true")
    p.add_argument("url")
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)
    events = []
    try:
        with httpx.Client(
            proxy=a.proxy,
            verify=ctx,
            http1=not a.http2,
            http2=a.http2,
            trust_env=False,
            timeout=httpx.Timeout(60.0),
        ) as client:
            with client.stream("GET", a.url, headers={"accept": "text/event-stream"}) as r:
                if r.status_code != 200:
                    print(json.dumps({"error": f"status {r.status_code}", "body": r.read().decode()}))
                    return 1
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        data = line[5:].strip()
                        events.append(data)
                        print(json.dumps({"event": data, "http_version": r.http_version}), flush=True)
                status = r.status_code
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"error": f"{type(e).__name__}: {e}", "events": events}))
        return 1
    print(json.dumps({"done": True, "events": events, "status": status}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
