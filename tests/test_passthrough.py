"""Same protocol on both sides: Anthropic to Anthropic and Gemini to Gemini go as they are.

What the shared Conversation does not carry (prompt-cache marks, server tools,
betas, safety settings) must reach the provider unchanged, the model renamed,
and the answer must come back unchanged but for the model, still recorded.
"""

from __future__ import annotations

import json

import pytest

from billing.models import UsageRecord
from catalog.selectors import catalog_cache_clear
from tests import fake_anthropic
from tests.fake_upstream import DEFAULT_PROMPT_TOKENS, DEFAULT_REPLY, words
from tests.fixtures_gateway import MODEL_ID, UPSTREAM_MODEL, expected_cost, sse_payloads

pytest_plugins = ["tests.fixtures_gateway"]


def anthropic_body(**extra) -> dict:
    body = {
        "model": MODEL_ID,
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a note"}},
                    {"type": "text", "text": "Say hello.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                ],
            }
        ],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        "context_management": {"edits": []},
    }
    body.update(extra)
    return body


def post(client, path, body, key, **headers):
    return client.post(path, data=json.dumps(body), content_type="application/json", headers={**headers})


def test_anthropic_request_reaches_an_anthropic_upstream_as_sent(client, route_to, raw_key, fake_upstream):
    route = route_to("anthropic")
    body = anthropic_body()
    response = post(
        client,
        "/v1/messages",
        body,
        raw_key,
        **{"x-api-key": raw_key, "anthropic-beta": "context-management-2025-06-27"},
    )
    assert response.status_code == 200, response.content
    received = fake_upstream.requests[-1]
    # cache_control, documents, unknown fields kept; the server tool (billed per use to Beluga's account) left out
    expected = {key: value for key, value in body.items() if key != "tools"}
    assert received.json == {**expected, "model": UPSTREAM_MODEL}
    assert response["X-Beluga-Dropped-Params"] == "tools.web_search_20250305"
    assert received.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert received.headers["x-api-key"] == route.credential
    answer = json.loads(response.content)
    assert answer["model"] == MODEL_ID
    assert answer["content"][0]["text"] == DEFAULT_REPLY
    record = UsageRecord.objects.get()
    assert (record.protocol, record.upstream_kind) == ("anthropic.messages", "anthropic")
    assert record.cost_micro_usd == expected_cost(DEFAULT_PROMPT_TOKENS, len(words(DEFAULT_REPLY)))
    assert response["X-Request-Cost-Micro-Usd"] == str(record.cost_micro_usd)


def test_anthropic_stream_is_relayed_event_for_event(client, route_to, raw_key, fake_upstream):
    route_to("anthropic")
    response = post(client, "/v1/messages", anthropic_body(stream=True), raw_key, **{"x-api-key": raw_key})
    raw = b"".join(response.streaming_content)
    sent = [json.loads(p) for p in sse_payloads(raw)]
    upstream_frames = fake_anthropic.stream_frames(
        "/v1/messages", {"model": UPSTREAM_MODEL, "stream": True}, fake_upstream.behaviour
    )
    expected = [json.loads(p) for p in sse_payloads(b"".join(upstream_frames))]
    assert [e["type"] for e in sent] == [e["type"] for e in expected]
    assert sent[0]["message"]["model"] == MODEL_ID
    for event in raw.split(b"\n\n")[:-1]:
        name, data = event.split(b"\n", 1)
        assert name == b"event: " + json.loads(data[6:])["type"].encode()
    record = UsageRecord.objects.get()
    assert (record.status_code, record.stream, record.usage_estimated) == (200, True, False)
    assert (record.prompt_tokens, record.completion_tokens) == (DEFAULT_PROMPT_TOKENS, len(words(DEFAULT_REPLY)))


def test_anthropic_server_tools_are_refused_when_translated(client, route_to, raw_key, fake_upstream):
    route_to("openai")
    response = post(client, "/v1/messages", anthropic_body(), raw_key, **{"x-api-key": raw_key})
    assert response.status_code == 400
    assert json.loads(response.content)["type"] == "error"
    assert not fake_upstream.requests


@pytest.mark.parametrize("alt", ["sse", None])
def test_gemini_request_reaches_a_gemini_upstream_as_sent(client, route_to, raw_key, fake_upstream, alt):
    route_to("gemini")
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Say hello."}]}],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {"candidateCount": 1, "mediaResolution": "MEDIA_RESOLUTION_LOW"},
    }
    query = "?alt=sse" if alt else ""
    path = f"/v1beta/models/{MODEL_ID}:streamGenerateContent{query}"
    response = post(client, path, body, raw_key, **{"x-goog-api-key": raw_key})
    assert response.status_code == 200
    raw = b"".join(response.streaming_content)
    received = fake_upstream.requests[-1]
    assert received.json == body
    assert received.path == f"/v1beta/models/{UPSTREAM_MODEL}:streamGenerateContent?alt=sse"
    chunks = [json.loads(p) for p in sse_payloads(raw)] if alt else json.loads(raw)
    assert all(chunk["modelVersion"] == MODEL_ID for chunk in chunks)
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0].get("content", {}).get("parts", []))
    assert text == DEFAULT_REPLY
    record = UsageRecord.objects.get()
    assert (record.protocol, record.upstream_kind, record.status_code) == ("gemini", "gemini", 200)


@pytest.mark.parametrize(
    ("kind", "path", "params", "expect"),
    [
        # fast path: OpenAI chat to an OpenAI upstream
        ("openai", "/v1/chat/completions", {"reasoning_effort": "high"}, {"reasoning_effort": "high"}),
        # translated: OpenAI chat to Anthropic; the route's value wins over the client's temperature
        (
            "anthropic",
            "/v1/chat/completions",
            {"thinking": {"type": "enabled", "budget_tokens": 1024}, "temperature": 1},
            {"thinking": {"type": "enabled", "budget_tokens": 1024}, "temperature": 1},
        ),
        # passthrough: Anthropic to Anthropic, nested objects merged
        ("anthropic", "/v1/messages", {"metadata": {"user_id": "route"}}, {"metadata": {"user_id": "route"}}),
        # translated to Gemini: nested into generationConfig beside what the writer set
        (
            "gemini",
            "/v1/chat/completions",
            {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
            {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
        ),
    ],
)
def test_route_params_are_merged_into_the_upstream_request(
    client, route_to, raw_key, fake_upstream, kind, path, params, expect
):
    route = route_to(kind)
    route.route.params = params
    route.route.save()
    catalog_cache_clear()
    if path == "/v1/messages":
        body = {"model": MODEL_ID, "max_tokens": 300, "messages": [{"role": "user", "content": "Hi"}]}
        headers = {"x-api-key": raw_key}
    else:
        body = {
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 0.3,
            "max_tokens": 2000,
        }
        headers = {"Authorization": f"Bearer {raw_key}"}
    response = post(client, path, body, raw_key, **headers)
    assert response.status_code == 200, response.content
    sent = fake_upstream.requests[-1].json
    for key, value in expect.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                assert sent[key][inner] == inner_value, sent
        else:
            assert sent[key] == value, sent
    if kind == "gemini":
        assert sent["generationConfig"]["maxOutputTokens"] == 2000  # the writer's own fields kept beside the route's


@pytest.mark.parametrize(
    ("kind", "path"), [("anthropic", "/v1/messages"), ("openai", "/v1/chat/completions"), ("openai", "/v1/responses")]
)
def test_json_nested_deeper_than_can_be_forwarded_is_a_400(client, route_to, raw_key, fake_upstream, kind, path):
    # orjson reads 1,024 levels but writes 255: such a body parses, then cannot go upstream.
    route_to(kind)
    nested: dict = {"text": "deep"}
    for _ in range(600):
        nested = {"n": nested}
    body = {"model": MODEL_ID, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}], "metadata": nested}
    if path == "/v1/responses":
        body = {"model": MODEL_ID, "input": "Hi", "metadata": nested}
    response = post(client, path, body, raw_key, **{"x-api-key": raw_key})
    assert response.status_code == 400, response.content
    assert b"nested too deeply" in response.content
    records = list(UsageRecord.objects.all())
    if fake_upstream.requests:  # Responses echo `metadata` in their answer: the call happened and is recorded once
        assert [(r.status_code, r.error_type) for r in records] == [(400, "invalid_json")]
    else:
        assert records == []
