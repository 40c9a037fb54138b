// An agent in Node that holds no secret: the official Notion SDK (as the end user) and
// a Slack call with fetch (as the agent's bot), both through sidekey.
//
//   sidekey run --config examples/sidekey.yaml --user alice -- node examples/node/agent.mjs
//
// Node 20/22's fetch ignores HTTP_PROXY/HTTPS_PROXY, so requests go through undici's
// EnvHttpProxyAgent, which reads them (and NO_PROXY). On Node 24+, the
// NODE_USE_ENV_PROXY=1 that `sidekey run` and `sidekey env` export makes the built-in
// fetch do the same without undici. sidekey's CA is trusted through
// NODE_EXTRA_CA_CERTS, also exported by `sidekey run`.
import { Client } from "@notionhq/client";
import { EnvHttpProxyAgent, fetch } from "undici";

const user = process.env.SIDEKEY_USER;
const dispatcher = new EnvHttpProxyAgent();
const viaSidekey = (url, init = {}) => fetch(url, { ...init, dispatcher });

// assistant: the identity header goes on every Notion call; no auth token here.
const notion = new Client({
  fetch: (url, init = {}) =>
    viaSidekey(url, { ...init, headers: { ...init.headers, "x-sidekey-user": user } }),
});
const me = await notion.users.me({});
const pages = await notion.search({ query: "onboarding" });

// claw: sidekey injects the bot token.
const posted = await viaSidekey("https://slack.com/api/chat.postMessage", {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ channel: "C0HR", text: "hello from node" }),
});
const slack = await posted.json();

console.log(
  "RESULT " +
    JSON.stringify({ notion_user: me.name, notion_pages: pages.results.map((p) => p.id), slack_ts: slack.ts }),
);
await dispatcher.close();
