"""Local stand-ins for the Slack, Notion and GitHub APIs, for the examples.

One HTTPS server answers for slack.com, api.notion.com and api.github.com with a
certificate for those names, signed by a CA it creates in --dir (ca.crt). sidekey
reaches it through `upstreams:` and trusts that CA through `tls.upstream_roots`, so the
agent keeps calling the real host names and sees real TLS end to end.

It prints one JSON line when listening ({"listening": "127.0.0.1:PORT", "ca": PATH}),
then one JSON line per request with the host, method, path and the SHA-256 of the
Authorization header it received (never the header itself), so a test can check which
credential arrived without the stand-in printing it.

    python examples/standins/apis.py --dir examples/.state/standins --port 9443
"""

import argparse
import datetime
import hashlib
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NAMES = ["slack.com", "api.notion.com", "api.github.com"]
LOG_LOCK = threading.Lock()


def make_certs(directory):
    """A CA (ca.crt) and a leaf for NAMES signed by it (leaf.crt, leaf.key)."""
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sidekey examples stand-in CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMES[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in NAMES]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {k: os.path.join(directory, k) for k in ("ca.crt", "leaf.crt", "leaf.key")}
    with open(paths["ca.crt"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["leaf.crt"], "wb") as f:
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(paths["leaf.key"], "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


def log(record):
    with LOG_LOCK:
        print(json.dumps(record), flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.handle_api()

    def do_POST(self):
        self.handle_api()

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        kind = self.headers.get("content-type", "")
        if "json" in kind:
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                return {}
        return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}

    def handle_api(self):
        host = (self.headers.get("host") or "").split(":")[0]
        path = self.path.split("?")[0]
        auth = self.headers.get("authorization")
        body = self.body() if self.command == "POST" else {}
        log(
            {
                "host": host,
                "method": self.command,
                "path": path,
                "auth_sha256": hashlib.sha256(auth.encode()).hexdigest() if auth else None,
                "identity_header": self.headers.get("x-sidekey-user"),
                "notion_version": self.headers.get("notion-version"),
            }
        )
        if not auth:
            return self.reply(401, {"message": "Requires authentication", "error": "not_authed"})
        status, answer = route(host, self.command, path, body)
        self.reply(status, answer)

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def route(host, method, path, body):
    if host == "slack.com" and path == "/api/chat.postMessage":
        return 200, {
            "ok": True,
            "channel": body.get("channel", "C0"),
            "ts": "1700000000.000100",
            "message": {"type": "message", "text": body.get("text", "")},
        }
    if host == "api.notion.com" and path == "/v1/users/me":
        return 200, {"object": "user", "id": "6794760a-0000-4000-8000-000000000001", "type": "person",
                     "name": "Alice", "person": {"email": "alice@example.com"}}
    if host == "api.notion.com" and path == "/v1/search" and method == "POST":
        return 200, {
            "object": "list",
            "results": [
                {"object": "page", "id": "59833787-0000-4000-8000-000000000002",
                 "url": "https://www.notion.so/Onboarding-5983", "properties": {}},
            ],
            "next_cursor": None,
            "has_more": False,
            "type": "page_or_database",
            "page_or_database": {},
        }
    if host == "api.github.com" and path == "/user":
        return 200, {"login": "alice", "id": 1, "type": "User", "url": "https://api.github.com/users/alice"}
    parts = path.strip("/").split("/")
    if host == "api.github.com" and len(parts) == 3 and parts[0] == "repos" and method == "GET":
        owner, repo = parts[1], parts[2]
        return 200, {
            "id": 4242, "name": repo, "full_name": f"{owner}/{repo}", "private": True,
            "owner": {"login": owner, "id": 2, "type": "Organization"},
            "url": f"https://api.github.com/repos/{owner}/{repo}",
            "html_url": f"https://github.com/{owner}/{repo}",
        }
    if host == "api.github.com" and len(parts) == 4 and parts[3] == "issues" and method == "POST":
        owner, repo = parts[1], parts[2]
        return 201, {
            "id": 77, "number": 7, "title": body.get("title", ""), "state": "open",
            "url": f"https://api.github.com/repos/{owner}/{repo}/issues/7",
            "html_url": f"https://github.com/{owner}/{repo}/issues/7",
            "user": {"login": "alice", "id": 1, "type": "User"},
        }
    return 404, {"message": "Not Found", "error": "not_found"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="where ca.crt and the leaf are written")
    ap.add_argument("--port", type=int, default=9443)
    args = ap.parse_args()
    paths = make_certs(args.dir)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(paths["leaf.crt"], paths["leaf.key"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    host, port = server.server_address[:2]
    log({"listening": f"{host}:{port}", "ca": paths["ca.crt"]})
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
