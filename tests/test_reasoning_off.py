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


def test_no_upstream_is_sent_thinking_when_it_is_off():
    assert "reasoning_effort" not in _sent(openai_chat, "openai", "o4-mini")
    assert "reasoning" not in _sent(openai_responses, "openai-responses", "gpt-5-codex")
    assert "thinking" not in _sent(anthropic_messages, "anthropic", "claude-x")
    # Gemini's own way to say off: a zero budget, thoughts not asked for.
    assert _sent(gemini, "gemini", "gemini-x")["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}


def test_thinking_off_with_a_forced_tool_drops_nothing():
    from gateway.protocols.conversation import Tool, ToolChoice

    conversation = Conversation(model="m", messages=[Message("user", [Text("Hi")])], thinking=ThinkingConfig.off())
    conversation.tools = [Tool(name="get_weather")]
    conversation.tool_choice = ToolChoice(mode="required")
    route = route_target(kind="anthropic", base_url="http://127.0.0.1:9", api_key="k", upstream_model="claude-x")
    request = anthropic_messages.build_request(conversation, route=route, stream=False)
    assert "thinking" not in orjson.loads(request.body)
    assert "thinking" not in request.dropped
