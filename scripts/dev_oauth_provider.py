#!/usr/bin/env python3
"""A tiny local OAuth 2.0 provider for the README's connect demo (development only).

    python3 scripts/dev_oauth_provider.py [PORT [REDIRECT_URI]]
    # defaults: 18081, http://127.0.0.1:15091/callback (config/dev.yaml's connect pages)

It plays "Notion" for config/dev.yaml's `notion-user` credential: GET /authorize shows
an Allow / Deny page, POST /authorize redirects back to sidekey's /callback with a code
(or error=access_denied), POST /token exchanges the code (client_secret_basic, S256
PKCE checked) or a refresh token. The one client is `dev-notion` / `dev-notion-secret`
with redirect URI http://127.0.0.1:15091/callback. Tokens are random and kept in
memory. Nothing here is fit for production: the tests use the real `oidc-provider`.
"""
import base64
import hashlib
import html
import json
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

CLIENT_ID = "dev-notion"
CLIENT_SECRET = "dev-notion-secret"
REDIRECT_URI = "http://127.0.0.1:15091/callback"
CODES = {}  # code -> (challenge, scope, expires)
REFRESH = {}  # refresh token -> scope


def tokens(scope):
    rt = "dev-rt-" + secrets.token_urlsafe(16)
    REFRESH[rt] = scope
    return {"access_token": "dev-at-" + secrets.token_urlsafe(16), "token_type": "Bearer",
            "expires_in": 3600, "refresh_token": rt, "scope": scope}


class Provider(BaseHTTPRequestHandler):
    def send(self, status, body, ctype="application/json", headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.send_header("cache-control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def form(self):
        n = int(self.headers.get("content-length") or 0)
        return {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode()).items()}

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path != "/authorize":
            return self.send(404, '{"error":"not_found"}')
        if q.get("client_id") != CLIENT_ID or q.get("redirect_uri") != REDIRECT_URI \
                or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return self.send(400, "<p>bad authorization request</p>", "text/html")
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in q.items())
        page = (f"<!doctype html><title>Dev Notion</title><h1>Dev Notion</h1>"
                f"<p>sidekey asks for: <b>{html.escape(q.get('scope', ''))}</b></p>"
                f'<form method="post" action="/authorize">{hidden}'
                f'<button name="decision" value="allow">Allow</button> '
                f'<button name="decision" value="deny">Deny</button></form>')
        self.send(200, page, "text/html; charset=utf-8")

    def do_POST(self):
        f = self.form()
        if self.path == "/authorize":
            back = {"state": f.get("state", "")}
            if f.get("decision") == "allow":
                code = secrets.token_urlsafe(16)
                CODES[code] = (f.get("code_challenge"), f.get("scope", ""), time.time() + 120)
                back["code"] = code
            else:
                back["error"] = "access_denied"
            return self.send(302, "", headers=[("location", REDIRECT_URI + "?" + urlencode(back))])
        if self.path != "/token":
            return self.send(404, '{"error":"not_found"}')
        auth = self.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if auth != expected:
            return self.send(401, '{"error":"invalid_client"}')
        if f.get("grant_type") == "authorization_code":
            challenge, scope, exp = CODES.pop(f.get("code", ""), (None, "", 0))
            verifier = f.get("code_verifier", "").encode()
            computed = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if challenge is None or time.time() > exp or computed != challenge \
                    or f.get("redirect_uri") != REDIRECT_URI:
                return self.send(400, '{"error":"invalid_grant"}')
            return self.send(200, json.dumps(tokens(scope)))
        if f.get("grant_type") == "refresh_token" and f.get("refresh_token") in REFRESH:
            return self.send(200, json.dumps(tokens(REFRESH.pop(f["refresh_token"]))))
        return self.send(400, '{"error":"invalid_grant"}')

    def log_message(self, fmt, *args):
        sys.stderr.write("dev-oauth: " + (fmt % args) + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18081
    if len(sys.argv) > 2:
        REDIRECT_URI = sys.argv[2]
    print(f"dev OAuth provider on http://127.0.0.1:{port} (client {CLIENT_ID})", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Provider).serve_forever()
