"""Thinking turned off is not thinking not asked for, and no upstream is sent thinking for either.

Model variants apply "thinking on by default" only when the client said nothing
(`Conversation.thinking is None`); a client that turned it off gets
`ThinkingConfig.off()`. Readers and writers are called directly: no server.
"""

from __future__ import annotations

import orjson
import pytest

from gateway.protocols import anthropic_messages, gemini, openai_chat, openai_responses
from gateway.protocols.conversation import Conversation, Message, Text, ThinkingConfig
from tests.fixtures_gateway import route_target

USER = [{"role": "user", "content": "Hi"}]
SAID_NOTHING = {
    "openai.chat": lambda: openai_chat.read_request({"model": "m", "messages": USER}),
    "openai.responses": lambda: openai_responses.read_request({"model": "m", "input": "Hi"}),
    "anthropic.messages": lambda: anthropic_messages.read_request({"model": "m", "max_tokens": 64, "messages": USER}),
    "gemini": lambda: gemini.read_request({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}, model="m"),
}
TURNED_OFF = {
    "openai.chat": lambda: openai_chat.read_request({"model": "m", "messages": USER, "reasoning_effort": "none"}),
    "openai.responses": lambda: openai_responses.read_request(
        {"model": "m", "input": "Hi", "reasoning": {"effort": "none"}}
    ),
    "anthropic.messages": lambda: anthropic_messages.read_request(
        {"model": "m", "max_tokens": 64, "messages": USER, "thinking": {"type": "disabled"}}
    ),
    "gemini": lambda: gemini.read_request(
        {
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}},
        },
        model="m",
    ),
}


@pytest.mark.parametrize("protocol", list(SAID_NOTHING))
def test_a_client_that_says_nothing_leaves_thinking_unset(protocol):
    assert SAID_NOTHING[protocol]().thinking is None


@pytest.mark.parametrize("protocol", list(TURNED_OFF))
def test_a_client_that_turns_thinking_off_is_read_as_off(protocol):
    thinking = TURNED_OFF[protocol]().thinking
    assert thinking is not None and thinking.is_off
    assert thinking.budget_tokens == 0 and not thinking.include_thoughts


def test_off_is_a_zero_budget_without_effort():
    assert ThinkingConfig.off() == ThinkingConfig(budget_tokens=0, effort=None, include_thoughts=False)
    assert not ThinkingConfig(effort="low").is_off
    assert not ThinkingConfig().is_off  # thinking on, the provider's amount


def _sent(module, kind: str, upstream_model: str) -> dict:
    conversation = Conversation(model="m", messages=[Message("user", [Text("Hi")])], thinking=ThinkingConfig.off())
    conversation.max_tokens = 4096
    route = route_target(kind=kind, base_url="http://127.0.0.1:9", api_key="k", upstream_model=upstream_model)
    request = module.build_request(conversation, route=route, stream=False)
    assert "thinking" not in request.dropped  # nothing asked, nothing dropped
    return orjson.loads(request.body)


def test_off_is_each_upstreams_own_least_thinking():
    assert "reasoning" not in _sent(openai_responses, "openai-responses", "gpt-5-codex")
    assert "thinking" not in _sent(anthropic_messages, "anthropic", "claude-x")
    # OpenAI's reasoning models: their lowest effort (not all can turn reasoning off); others: nothing.
    assert _sent(openai_chat, "openai", "o4-mini")["reasoning_effort"] == "low"
    assert _sent(openai_chat, "openai", "gpt-5")["reasoning_effort"] == "minimal"
    assert _sent(openai_chat, "openai", "gpt-5.1")["reasoning_effort"] == "none"
    assert "reasoning_effort" not in _sent(openai_chat, "openai", "deepseek-chat")
    # Gemini's own way to say off: a zero budget, thoughts not asked for; Gemini 3 its lowest level;
    # a model that does not think (2.0) is not told anything.
    assert _sent(gemini, "gemini", "gemini-2.5-flash")["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}
    assert _sent(gemini, "gemini", "gemini-3-pro-preview")["generationConfig"]["thinkingConfig"] == {
        "thinkingLevel": "low"
    }
    assert "thinkingConfig" not in _sent(gemini, "gemini", "gemini-2.0-flash").get("generationConfig", {})


def test_a_chat_client_gives_a_gemini_call_its_signature_back_on_the_call():
    """Gemini signs a turn's first function call; a chat message puts the text first and the reasoning
    apart, so the signature must go back on the call, not on the text."""
    from gateway.protocols import gemini_upstream
    from gateway.validation import validate_chat_request

    answer = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Let me look that up."},
                        {"functionCall": {"name": "lookup", "args": {"q": "x"}}, "thoughtSignature": "R09PR0xFU0lH"},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5},
    }
    message = openai_chat.write_reply(gemini_upstream.read_reply(answer), model="m", request_id="r")["choices"][0]
    message = {key: value for key, value in message["message"].items() if value is not None}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    result = {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "42"}
    chat = validate_chat_request({"model": "m", "messages": [*USER, message, result], "tools": tools})
    route = route_target(kind="gemini", base_url="http://127.0.0.1:9", api_key="k", upstream_model="gemini-3-pro")
    sent = orjson.loads(gemini.build_request(openai_chat.conversation_from(chat), route=route, stream=False).body)
    model_turn = sent["contents"][1]["parts"]
    assert model_turn[0] == {"text": "Let me look that up."}
    assert model_turn[1]["functionCall"]["name"] == "lookup"
    assert model_turn[1]["thoughtSignature"] == "R09PR0xFU0lH"


def test_thinking_off_with_a_forced_tool_drops_nothing():
    from gateway.protocols.conversation import Tool, ToolChoice

    conversation = Conversation(model="m", messages=[Message("user", [Text("Hi")])], thinking=ThinkingConfig.off())
    conversation.tools = [Tool(name="get_weather")]
    conversation.tool_choice = ToolChoice(mode="required")
    route = route_target(kind="anthropic", base_url="http://127.0.0.1:9", api_key="k", upstream_model="claude-x")
    request = anthropic_messages.build_request(conversation, route=route, stream=False)
    assert "thinking" not in orjson.loads(request.body)
    assert "thinking" not in request.dropped
