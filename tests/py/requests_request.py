"""One request with `requests`, configured only by the environment (HTTPS_PROXY,
REQUESTS_CA_BUNDLE), as an agent would be; prints one JSON line.

    HTTPS_PROXY=http://127.0.0.1:PORT REQUESTS_CA_BUNDLE=bundle.pem \
        requests_request.py [--method POST] [--json '{"a":1}'] URL

Exit 0 when a response arrived (whatever its status), 1 on a client error.
"""
import argparse
import json
import os
import sys

import requests


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--method", default="GET")
    p.add_argument("--json", dest="json_body")
    p.add_argument("url")
    a = p.parse_args()
    for var in ("HTTPS_PROXY", "REQUESTS_CA_BUNDLE"):
        if not os.environ.get(var):
            print(json.dumps({"error": f"{var} is not set"}))
            return 1
    try:
        kwargs = {"timeout": 60}
        if a.json_body is not None:
            kwargs["json"] = json.loads(a.json_body)
        r = requests.request(a.method, a.url, **kwargs)
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    try:
        body_json = r.json()
    except ValueError:
        body_json = None
    print(
        json.dumps(
            {
                "status": r.status_code,
                "headers": {k.lower(): v for k, v in r.headers.items()},
                "body": r.text,
                "json": body_json,
                "ca_bundle": os.environ["REQUESTS_CA_BUNDLE"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
