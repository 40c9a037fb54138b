"""One request with httpx through an HTTPS proxy; prints one JSON line.

    httpx_request.py --proxy http://127.0.0.1:PORT --ca ca.crt [--http2] \
        [--method POST] [--json '{"a":1}'] [--header 'k: v'] URL

Exit 0 when a response arrived (whatever its status), 1 on a client error.
"""
import argparse
import json
import ssl
import sys

import httpx


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--proxy", required=True)
    p.add_argument("--ca", required=True, help="PEM file of the CA to trust")
    p.add_argument("--http2", action="store_true", help="HTTP/2 only (ALPN h2)")
    p.add_argument("--method", default="GET")
    p.add_argument("--json", dest="json_body")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("url")
    a = p.parse_args()

    ctx = ssl.create_default_context(cafile=a.ca)
    headers = {}
    for h in a.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    try:
        with httpx.Client(
            proxy=a.proxy,
            verify=ctx,
            http1=not a.http2,
            http2=a.http2,
            trust_env=False,
            timeout=60.0,
        ) as client:
            kwargs = {"headers": headers}
            if a.json_body is not None:
                kwargs["json"] = json.loads(a.json_body)
            r = client.request(a.method, a.url, **kwargs)
    except Exception as e:  # noqa: BLE001 - report any client failure as data
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
                "http_version": r.http_version,
                "headers": {k.lower(): v for k, v in r.headers.items()},
                "body": r.text,
                "json": body_json,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
