#!/usr/bin/env python3
"""A local upstream that shows what it received: the README's quick example uses it.

    python3 scripts/echo_upstream.py [PORT]    # default 18080; Ctrl-C stops it

For every request it
  * prints the request line and every header it received to its own terminal (stderr),
    exactly as they arrived: this is where you see the credential sidekey injected;
  * answers with the same information as JSON.

The JSON answer travels back through sidekey. On a route that injects a credential,
sidekey scans the response for that secret and replaces it with `*` of the same
length (so an upstream that echoes requests can never hand the secret to the agent),
which is why the answer the client prints shows `Bearer ******...` while this
terminal shows the real token.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = [(k.lower(), v) for k, v in self.headers.items()]
        lines = [f"--- {self.command} {self.path} ({len(body)} body bytes)"]
        lines += [f"    {k}: {v}" for k, v in headers]
        print("\n".join(lines), file=sys.stderr, flush=True)
        out = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": dict(headers),
            "body_bytes": len(body),
        }, indent=2).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18080
    print(f"echo upstream on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    try:
        ThreadingHTTPServer(("127.0.0.1", port), Echo).serve_forever()
    except KeyboardInterrupt:
        pass
