"""A LangGraph agent whose tools call Slack (claw) and Notion (assistant) through
sidekey. The chat model is scripted (langchain_core's GenericFakeChatModel): no LLM
and no network besides the tools' own calls, so the run is the same every time.

    sidekey run --config examples/sidekey.yaml --user alice -- python examples/langgraph/agent.py

Each tool call shows up as one audit record on sidekey's stdout: the Slack post as
`system_service` with the bot credential, the Notion search as `user_delegated` for
alice with her own token.
"""

import json
import os

import httpx
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

USER = os.environ["SIDEKEY_USER"]
http = httpx.Client(timeout=30)  # HTTPS_PROXY and SSL_CERT_FILE come from sidekey run


@tool
def search_notion(query: str) -> str:
    """Search the user's Notion workspace (acts as the end user)."""
    r = http.post(
        "https://api.notion.com/v1/search",
        json={"query": query},
        headers={"x-sidekey-user": USER},
    )
    r.raise_for_status()
    return json.dumps([p["url"] for p in r.json()["results"]])


@tool
def post_to_slack(channel: str, text: str) -> str:
    """Post a message to a Slack channel (as the agent's bot)."""
    r = http.post("https://slack.com/api/chat.postMessage", json={"channel": channel, "text": text})
    r.raise_for_status()
    return r.json()["ts"]


class ScriptedModel(GenericFakeChatModel):
    """The fake model, able to be bound to tools (the script already knows them)."""

    def bind_tools(self, tools, **kwargs):
        return self


script = iter(
    [
        AIMessage(content="", tool_calls=[{"name": "search_notion", "args": {"query": "onboarding"}, "id": "call-1"}]),
        AIMessage(
            content="",
            tool_calls=[
                {"name": "post_to_slack", "args": {"channel": "C0HR", "text": "Onboarding pages found"}, "id": "call-2"}
            ],
        ),
        AIMessage(content="Posted the onboarding pages to #hr."),
    ]
)
tools = [search_notion, post_to_slack]
model = ScriptedModel(messages=script).bind_tools(tools)


def agent(state: MessagesState):
    return {"messages": [model.invoke(state["messages"])]}


graph = StateGraph(MessagesState)
graph.add_node("agent", agent)
graph.add_node("tools", ToolNode(tools))
graph.add_edge(START, "agent")
graph.add_conditional_edges("agent", tools_condition)
graph.add_edge("tools", "agent")
app = graph.compile()

final = app.invoke({"messages": [HumanMessage(content="Share the onboarding docs with #hr")]})
tool_results = [m.content for m in final["messages"] if m.type == "tool"]
print("RESULT " + json.dumps({"answer": final["messages"][-1].content, "tools": tool_results}), flush=True)
