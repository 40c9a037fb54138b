"""An MCP agent: the official SDK's Streamable HTTP client and ClientSession.

    mcp_client.py --url URL [--user U] [--proxy http://127.0.0.1:P] [--ca PEM] [--list]
                  [--call NAME JSON_ARGS]...

Initializes a session, lists tools when asked (one page), makes each call in order,
and prints one JSON object: {"server", "tools": [names], "next_cursor", "calls":
[{"name", "ok", "text"} | {"name", "ok": false, "code", "message", "data",
"elicitations"}]}, or {"init_error": {...}} when initialize is refused.
Exit 1 on a transport or protocol failure.
"""
import argparse
import asyncio
import json
import ssl
import sys

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError, UrlElicitationRequiredError
from mcp.types import URL_ELICITATION_REQUIRED


async def run(a: argparse.Namespace) -> dict:
    headers = {"x-sidekey-user": a.user} if a.user else {}
    out: dict = {"calls": []}
    http = httpx.AsyncClient(
        headers=headers,
        proxy=a.proxy,
        verify=ssl.create_default_context(cafile=a.ca) if a.ca else True,
        trust_env=False,
        timeout=httpx.Timeout(30.0, read=60.0),
    )
    async with http:
        async with streamable_http_client(a.url, http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                try:
                    init = await session.initialize()
                except McpError as e:
                    out["init_error"] = error_entry(e)
                    return out
                out["server"] = init.serverInfo.name
                if a.list:
                    listed = await session.list_tools()
                    out["tools"] = [t.name for t in listed.tools]
                    out["next_cursor"] = listed.nextCursor
                for name, args in a.call or []:
                    try:
                        result = await session.call_tool(name, json.loads(args))
                        text = "".join(c.text for c in result.content if c.type == "text")
                        out["calls"].append({"name": name, "ok": not result.isError, "text": text})
                    except McpError as e:
                        out["calls"].append({"name": name, "ok": False, **error_entry(e)})
    return out


def error_entry(e: McpError) -> dict:
    """A JSON-RPC error as the SDK parsed it (URL elicitations decoded by the SDK)."""
    entry = {"code": e.error.code, "message": e.error.message, "data": e.error.data}
    if e.error.code == URL_ELICITATION_REQUIRED:
        parsed = UrlElicitationRequiredError.from_error(e.error)
        entry["elicitations"] = [
            {"mode": el.mode, "url": el.url, "id": el.elicitationId, "message": el.message}
            for el in parsed.elicitations
        ]
    return entry


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--user")
    p.add_argument("--proxy")
    p.add_argument("--ca", help="CA bundle to trust (sidekey's, for HTTPS through the proxy)")
    p.add_argument("--list", action="store_true")
    p.add_argument("--call", nargs=2, action="append", metavar=("NAME", "ARGS"))
    a = p.parse_args()
    try:
        out = asyncio.run(run(a))
    except BaseException as e:  # noqa: BLE001 (an exception group from anyio included)
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
