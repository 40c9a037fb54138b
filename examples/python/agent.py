"""An agent that holds no secret: it calls Slack, Notion and GitHub with their
official SDKs and lets sidekey add the credentials.

Run it through sidekey (examples/run.sh python, or by hand):

    sidekey run --config examples/sidekey.yaml --user alice -- python examples/python/agent.py

`sidekey run` gives it HTTPS_PROXY and the trust variables (SSL_CERT_FILE,
REQUESTS_CA_BUNDLE, ...), so each SDK goes through sidekey with its default settings;
the only sidekey-specific line is the identity header for the assistant (Notion) calls,
taken from SIDEKEY_USER.
"""

import json
import os

import httpx
import requests
from github import Github
from notion_client import Client as Notion
from slack_sdk import WebClient

user = os.environ["SIDEKEY_USER"]
result = {}


class AsUser(httpx.Auth):
    """Names the end user on every request (sidekey then uses that user's token).
    An httpx auth hook rather than a default header: SDKs such as notion-client
    replace a client's headers with their own."""

    def __init__(self, user):
        self.user = user

    def auth_flow(self, request):
        request.headers["x-sidekey-user"] = self.user
        yield request


# claw: the bot token is sidekey's (route slack-post); the SDK sends none.
slack = WebClient()
posted = slack.chat_postMessage(channel="C0HR", text="Weekly HR digest is ready")
result["slack_ts"] = posted["ts"]

# assistant: Notion as the end user; sidekey picks the user's own token.
with httpx.Client(auth=AsUser(user)) as http:
    notion = Notion(client=http)
    result["notion_user"] = notion.users.me()["name"]
    pages = notion.search(query="onboarding")["results"]
    result["notion_pages"] = [p["id"] for p in pages]

# claw: GitHub through PyGithub (requests inside) with the service token.
gh = Github()
repo = gh.get_repo("acme/infra")
issue = repo.create_issue(title="Rotate the HR bot token")
result["github_issue"] = issue.number

# deny: nothing matches this Slack admin call, so sidekey refuses it (403).
denied = requests.get("https://slack.com/api/admin.users.list", timeout=30)
result["denied"] = [denied.status_code, denied.headers.get("x-sidekey-error")]

print("RESULT " + json.dumps(result), flush=True)
