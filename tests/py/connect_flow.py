"""Drive one connect flow like a browser, with a cookie-keeping httpx client.

    connect_flow.py URL --login NAME [--abort] [--stop-at PREFIX] [--cookies FILE]

Starts at URL (a sidekey connect link), follows redirects by hand, answers the
oidc-provider development login form with NAME (any password) and its consent form
(or cancels it with --abort, which makes the provider answer error=access_denied), or
the Allow / Deny page of scripts/dev_oauth_provider.py the same way.
With --stop-at PREFIX the first redirect to a URL starting with PREFIX is not followed.
--cookies FILE loads the cookie jar from FILE (if present) and saves it there at the end.
Prints one JSON object: the final status, url, headers, body, every URL visited, and
(with --stop-at) the URL it stopped at plus a Cookie header for it.
"""
import argparse
import html
import json
import os
import re
import sys
from http.cookiejar import Cookie
from urllib.parse import urljoin

import httpx


def load_jar(client, path):
    if path and os.path.exists(path):
        with open(path) as f:
            for c in json.load(f):
                client.cookies.set(c["name"], c["value"], domain=c["domain"], path=c["path"])


def save_jar(client, path):
    if not path:
        return
    out = [
        {"name": c.name, "value": c.value, "domain": c.domain, "path": c.path}
        for c in client.cookies.jar
    ]
    with open(path, "w") as f:
        json.dump(out, f)


def cookie_header(client, url):
    req = httpx.Request("GET", url)
    client.cookies.set_cookie_header(req)
    return req.headers.get("cookie", "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--login", default="alice")
    ap.add_argument("--abort", action="store_true")
    ap.add_argument("--stop-at")
    ap.add_argument("--cookies")
    a = ap.parse_args()
    visited = []
    with httpx.Client(follow_redirects=False, timeout=30, trust_env=False) as client:
        load_jar(client, a.cookies)
        resp = client.get(a.url)
        visited.append(a.url)
        for _ in range(30):
            if resp.is_redirect:
                nxt = urljoin(str(resp.url), resp.headers["location"])
                if a.stop_at and nxt.startswith(a.stop_at):
                    save_jar(client, a.cookies)
                    print(json.dumps({"stopped_at": nxt, "cookie": cookie_header(client, nxt), "visited": visited}))
                    return
                visited.append(nxt)
                resp = client.get(nxt)
                continue
            body = resp.text
            dev = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', body, re.S)
            if resp.status_code == 200 and dev and 'name="decision"' in dev.group(2):
                # scripts/dev_oauth_provider.py: Allow / Deny.
                fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', dev.group(2)))
                fields = {k: html.unescape(v) for k, v in fields.items()}
                fields["decision"] = "deny" if a.abort else "allow"
                action = urljoin(str(resp.url), dev.group(1))
                resp = client.post(action, data=fields)
                visited.append(action)
                continue
            form = re.search(r'<form[^>]*action="([^"]+)"[^>]*>.*?name="prompt" value="(\w+)"', body, re.S)
            if resp.status_code == 200 and form:
                action, prompt = urljoin(str(resp.url), form.group(1)), form.group(2)
                if prompt == "login":
                    resp = client.post(action, data={"prompt": "login", "login": a.login, "password": "any"})
                elif a.abort:
                    resp = client.get(action.rstrip("/") + "/abort")
                else:
                    resp = client.post(action, data={"prompt": "consent"})
                visited.append(action)
                continue
            break
        save_jar(client, a.cookies)
        print(json.dumps({
            "status": resp.status_code,
            "url": str(resp.url),
            "headers": {k.lower(): v for k, v in resp.headers.items()},
            "body": resp.text,
            "visited": visited,
        }))


if __name__ == "__main__":
    sys.exit(main())
