"""What the protocol matrix (tests/test_protocol_matrix.py) leaves out, over real HTTP.

Errors in each client's own shape on the Anthropic and Gemini paths, the
X-Beluga-Dropped-Params header, cache and reasoning tokens on the usage record,
translated streams that end badly, token counting, Gemini's model listing,
POST /v1/embeddings and images given by URL to a Gemini upstream. In-process
requests go through Django's test client; the real SDKs run against the live
server where what they do with the answer matters.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from accounts.services import user_set_limits
from billing.models import UsageRecord
from catalog.models import CHAT_CATEGORIES, AIModel, Category, Route, Upstream
from catalog.selectors import catalog_cache_clear
from gateway.pipeline import estimate_conversation_tokens, estimate_tokens
from gateway.protocols import anthropic_messages, gemini
from tests.fake_upstream import DEFAULT_REPLY, embedding_vector
from tests.fixtures_gateway import (
    INPUT_PER_1M,
    MODEL_ID,
    OUTPUT_PER_1M,
    UPSTREAM_MODEL,
    ChatRoute,
    RawStream,
    error_of,
    expected_cost,
    in_one_window,
    sse_payloads,
    wait_for_record,
)

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
LONG_REPLY = " ".join(f"word{i}" for i in range(40))
PROMPT = "Say hello."
ANTHROPIC_PATHS = ["/v1/messages", "/api/v1/messages"]
GEMINI_PREFIXES = ["/v1beta", "/api/v1beta"]


# --- requests and error shapes ------------------------------------------------------------


def post(client, path: str, body, headers: dict | None = None):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", headers=headers or {})


def anthropic_body(**overrides) -> dict:
    return {"model": MODEL_ID, "max_tokens": 256, "messages": [{"role": "user", "content": PROMPT}], **overrides}


def gemini_body(**overrides) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}], **overrides}


def gemini_path(prefix: str = "/v1beta", action: str = "generateContent", model: str = MODEL_ID) -> str:
    return f"{prefix}/models/{model}:{action}"


def has_request_id(response) -> bool:
    return response["X-Request-Id"].startswith("req_")


def anthropic_error(response, status: int, kind: str) -> str:
    """The message of an Anthropic-shaped error, checking status, shape and request id on the way."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert has_request_id(response)
    body = json.loads(response.content)
    assert body["type"] == "error" and set(body) <= {"type", "error", "request_id"}, body
    assert body["error"]["type"] == kind, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


def google_error(response, status: int, name: str) -> str:
    """The message of a Google-shaped error: {"error": {"code", "message", "status"}}."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert has_request_id(response)
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert (error["code"], error["status"]) == (status, name), error
    assert isinstance(error["message"], str) and error["message"]
    return error["message"]


def openai_error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert has_request_id(response)
    return error_of(response)


def records() -> list[UsageRecord]:
    return list(UsageRecord.objects.order_by("id"))


def only_record() -> UsageRecord:
    wait_for_record()  # calls through the live server are recorded once their answer was sent
    [record] = records()
    return record


@pytest.fixture
def limited_key(api_key_factory, user_factory):
    """A free-plan key allowed one chat request a minute."""
    user = user_factory(plan="free", password=None)
    user_set_limits(user=user, chat_rpm=1)
    return api_key_factory(user=user)[1]


# --- errors in each client's shape ----------------------------------------------------------


@pytest.mark.parametrize("path", ANTHROPIC_PATHS + [p + "/count_tokens" for p in ANTHROPIC_PATHS])
@pytest.mark.parametrize("headers", [{}, {"x-api-key": "bapi_" + "N" * 43}, {"Authorization": "Bearer nope"}])
def test_anthropic_paths_refuse_a_missing_or_wrong_key_in_anthropics_shape(client, db, fake_upstream, path, headers):
    response = post(client, path, anthropic_body(), headers)
    assert "API key" in anthropic_error(response, 401, "authentication_error")
    assert fake_upstream.requests == []


@pytest.mark.parametrize("path", ANTHROPIC_PATHS)
@pytest.mark.parametrize("header", ["x-api-key", "Authorization"])
def test_anthropic_paths_accept_x_api_key_and_bearer(client, route_to, raw_key, path, header):
    route_to("anthropic")
    value = raw_key if header == "x-api-key" else f"Bearer {raw_key}"
    response = post(client, path, anthropic_body(), {header: value})
    assert response.status_code == 200, response.content
    blocks = json.loads(response.content)["content"]
    assert [b["text"] for b in blocks if b["type"] == "text"] == [DEFAULT_REPLY]


@pytest.mark.parametrize("path", ["/v1/messages", "/api/v1/messages", "/v1/chat/completions"])
def test_a_key_in_the_query_string_is_not_accepted_on_v1_paths(client, chat_route, raw_key, fake_upstream, path):
    body = anthropic_body() if path.endswith("messages") else {"model": MODEL_ID, "messages": [{"role": "user"}]}
    response = post(client, f"{path}?key={raw_key}", body)
    if path.endswith("messages"):
        anthropic_error(response, 401, "authentication_error")
    else:
        assert openai_error(response, 401)["code"] == "invalid_api_key"
    assert fake_upstream.requests == []


@pytest.mark.parametrize("prefix", GEMINI_PREFIXES)
@pytest.mark.parametrize("how", ["query", "x-goog-api-key", "bearer"])
def test_gemini_paths_take_the_key_from_the_query_or_the_google_header(client, route_to, raw_key, prefix, how):
    route_to("gemini")
    path = gemini_path(prefix)
    headers = {}
    if how == "query":
        path += f"?key={raw_key}"
    elif how == "x-goog-api-key":
        headers["x-goog-api-key"] = raw_key
    else:
        headers["Authorization"] = f"Bearer {raw_key}"
    response = post(client, path, gemini_body(), headers)
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["candidates"][0]["content"]["parts"] == [{"text": DEFAULT_REPLY}]


@pytest.mark.parametrize("prefix", GEMINI_PREFIXES)
@pytest.mark.parametrize("action", ["generateContent", "streamGenerateContent", "countTokens"])
@pytest.mark.parametrize("how", ["none", "query", "x-goog-api-key"])
def test_gemini_paths_refuse_a_missing_or_wrong_key_in_googles_shape(
    client, chat_route, fake_upstream, prefix, action, how
):
    path, headers = gemini_path(prefix, action), {}
    if how == "query":
        path += "?key=bapi_wrong"
    elif how == "x-goog-api-key":
        headers["x-goog-api-key"] = "bapi_wrong"
    google_error(post(client, path, gemini_body(), headers), 401, "UNAUTHENTICATED")
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    "path, body, shape",
    [
        ("/v1/messages", anthropic_body(model="no-such-model"), "anthropic"),
        ("/api/v1/messages", anthropic_body(model="no-such-model"), "anthropic"),
        ("/v1/messages/count_tokens", anthropic_body(model="no-such-model"), "anthropic"),
        (gemini_path(model="no-such-model"), gemini_body(), "google"),
        (gemini_path("/api/v1beta", model="no-such-model"), gemini_body(), "google"),
        (gemini_path(action="countTokens", model="no-such-model"), gemini_body(), "google"),
    ],
)
def test_an_unknown_model_is_404_in_the_clients_shape(client, chat_route, raw_key, fake_upstream, path, body, shape):
    response = post(client, path, body, {"x-api-key": raw_key})
    if shape == "anthropic":
        message = anthropic_error(response, 404, "not_found_error")
    else:
        message = google_error(response, 404, "NOT_FOUND")
    assert "no-such-model" in message
    assert fake_upstream.requests == []


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_an_anthropic_error_body_carries_the_request_id(client, chat_route, raw_key, path):
    response = post(client, path, anthropic_body(model="no-such-model"), {"x-api-key": raw_key})
    anthropic_error(response, 404, "not_found_error")
    assert json.loads(response.content).get("request_id") == response["X-Request-Id"]


@pytest.mark.parametrize(
    "path, body, named",
    [
        ("/v1/messages", anthropic_body(max_tokens=None), "max_tokens"),
        ("/api/v1/messages", anthropic_body(messages=[{"role": "robot", "content": "Hi"}]), "messages.0.role"),
        ("/v1/messages", anthropic_body(temperature=3), "temperature"),
        ("/v1/messages", "{not json", "JSON"),
        ("/v1/messages/count_tokens", {"model": MODEL_ID}, "messages"),
        (gemini_path(), {"contents": []}, "contents"),
        (gemini_path("/api/v1beta"), gemini_body(generationConfig={"temperature": 5}), "generationConfig.temperature"),
        (gemini_path(), gemini_body(contents=[{"role": "robot", "parts": [{"text": "Hi"}]}]), "contents[0].role"),
        (gemini_path(), "[1, 2", "JSON"),
        (gemini_path(action="countTokens"), {"contents": "Hi"}, "contents"),
    ],
)
def test_an_invalid_body_is_400_naming_the_problem(client, chat_route, raw_key, fake_upstream, path, body, named):
    response = post(client, path, body, {"x-api-key": raw_key})
    if path.startswith("/v1beta") or path.startswith("/api/v1beta"):
        message = google_error(response, 400, "INVALID_ARGUMENT")
    else:
        message = anthropic_error(response, 400, "invalid_request_error")
    assert named in message
    assert fake_upstream.requests == []
    assert records() == []


@pytest.mark.parametrize(
    "path", ["/v1/messages", "/api/v1/messages", "/v1/messages/count_tokens", gemini_path(), gemini_path("/api/v1beta")]
)
def test_a_body_over_the_limit_is_413_in_the_clients_shape(client, settings, chat_route, raw_key, fake_upstream, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = settings.MAX_REQUEST_BODY_BYTES = 2048
    big = "x" * 4096
    body = gemini_body(contents=[{"parts": [{"text": big}]}]) if "v1beta" in path else anthropic_body(system=big)
    response = post(client, path, body, {"x-api-key": raw_key})
    if "v1beta" in path:
        message = google_error(response, 413, "INVALID_ARGUMENT")
    else:
        message = anthropic_error(response, 413, "request_too_large")
    assert "2048 bytes" in message
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/v1beta/files"),
        ("post", "/v1beta/models/test-model:embedEverything"),
        ("get", "/api/v1beta/tunedModels"),
        ("post", "/v1beta/models/test-model/extra:generateContent"),
        ("get", "/v1beta/"),
    ],
)
def test_an_unknown_path_under_v1beta_is_404_in_googles_shape(client, chat_route, raw_key, method, path):
    response = getattr(client, method)(path, headers={"x-goog-api-key": raw_key})
    google_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "method, path, shape",
    [
        ("get", "/v1/messages", "anthropic"),
        ("put", "/api/v1/messages", "anthropic"),
        ("get", "/v1/messages/count_tokens", "anthropic"),
        ("get", gemini_path(), "google"),
        ("get", gemini_path("/api/v1beta", "countTokens"), "google"),
        ("delete", "/v1beta/models", "google"),
        ("post", f"/v1beta/models/{MODEL_ID}", "google"),
    ],
)
def test_a_method_not_allowed_is_405_in_the_clients_shape(client, chat_route, raw_key, method, path, shape):
    response = getattr(client, method)(path, headers={"x-api-key": raw_key})
    if shape == "anthropic":
        message = anthropic_error(response, 405, "invalid_request_error")
    else:
        message = google_error(response, 405, "INVALID_ARGUMENT")
    assert method.upper() in message


@pytest.mark.parametrize("path", ["/v1/messages", gemini_path()])
def test_a_method_not_allowed_names_the_allowed_methods(client, db, path):
    response = client.get(path)
    assert response.status_code == 405
    assert response["Allow"] == "POST"


@pytest.mark.parametrize(
    "path, body, shape",
    [
        ("/v1/messages", anthropic_body(), "anthropic"),
        ("/api/v1/messages", anthropic_body(), "anthropic"),
        (gemini_path(), gemini_body(), "google"),
        (gemini_path("/api/v1beta", "streamGenerateContent") + "?alt=sse", gemini_body(), "google"),
    ],
)
def test_a_rate_limited_call_is_429_in_the_clients_shape(
    client, chat_route, limited_key, fake_upstream, path, body, shape
):
    def two_calls():
        first = post(client, path, body, {"x-api-key": limited_key})
        if first.streaming:
            b"".join(first.streaming_content)
        return [first, post(client, path, body, {"x-api-key": limited_key})]

    first, response = in_one_window(two_calls)
    assert first.status_code == 200
    assert first["X-RateLimit-Remaining-Requests"] == "0"
    if shape == "anthropic":
        message = anthropic_error(response, 429, "rate_limit_error")
    else:
        message = google_error(response, 429, "RESOURCE_EXHAUSTED")
    assert "1 chat requests per minute" in message
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["X-RateLimit-Limit-Requests"] == "1"
    assert response["X-RateLimit-Remaining-Requests"] == "0"
    assert int(response["X-RateLimit-Reset-Requests"]) >= int(time.time())
    assert len(fake_upstream.requests) == 1
    assert len(records()) == 1


# --- X-Beluga-Dropped-Params ------------------------------------------------------------------


def read_body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("stream", [False, True])
def test_openai_only_parameters_sent_to_an_anthropic_upstream_are_named(
    client, route_to, raw_key, fake_upstream, stream
):
    route_to("anthropic")
    body = {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": PROMPT}],
        "seed": 7,
        "presence_penalty": 0.5,
        "repetition_penalty": 1.1,
        "stream": stream,
    }
    response = post(client, "/v1/chat/completions", body, {"Authorization": f"Bearer {raw_key}"})
    assert response.status_code == 200
    read_body(response)
    assert response["X-Beluga-Dropped-Params"] == "presence_penalty, repetition_penalty, seed"
    sent = fake_upstream.requests[-1].json
    assert not {"seed", "presence_penalty", "repetition_penalty"} & set(sent)


def test_a_responses_web_search_tool_is_named_dropped(client, route_to, raw_key, fake_upstream):
    route_to("openai")
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    body = {"model": MODEL_ID, "input": PROMPT, "tools": [{"type": "web_search"}, tool]}
    response = post(client, "/v1/responses", body, {"Authorization": f"Bearer {raw_key}"})
    assert response.status_code == 200, response.content
    assert response["X-Beluga-Dropped-Params"] == "tools.web_search"
    assert [t["function"]["name"] for t in fake_upstream.requests[-1].json["tools"]] == ["get_weather"]


def test_gemini_fields_beluga_cannot_carry_are_named_dropped(client, route_to, raw_key):
    route_to("anthropic")
    body = gemini_body(safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT"}], cachedContent="cachedContents/1")
    response = post(client, gemini_path(), body, {"x-goog-api-key": raw_key})
    assert response.status_code == 200, response.content
    assert response["X-Beluga-Dropped-Params"] == "cachedContent, safetySettings"


@pytest.mark.parametrize(
    "kind, path, body",
    [
        ("anthropic", "/v1/chat/completions", {"model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}]}),
        # The fast path forwards the body as it is: nothing is dropped, seed included.
        (
            "openai",
            "/v1/chat/completions",
            {"model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}], "seed": 7},
        ),
        ("gemini", "/v1/messages", anthropic_body(temperature=0.5, top_k=5)),
        ("anthropic", "/v1/responses", {"model": MODEL_ID, "input": PROMPT, "temperature": 0.5}),
    ],
)
def test_nothing_dropped_means_no_dropped_params_header(client, route_to, raw_key, kind, path, body):
    route_to(kind)
    response = post(client, path, body, {"Authorization": f"Bearer {raw_key}"})
    assert response.status_code == 200, response.content
    assert "X-Beluga-Dropped-Params" not in response


def test_several_answers_from_an_anthropic_upstream_are_refused_naming_n(client, route_to, raw_key, fake_upstream):
    route_to("anthropic")
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}], "n": 2}
    error = openai_error(post(client, "/v1/chat/completions", body, {"Authorization": f"Bearer {raw_key}"}), 400)
    assert error["param"] == "n"
    assert "n > 1" in error["message"]
    assert fake_upstream.requests == []
    assert records() == []


# --- cache and reasoning tokens on the usage record -----------------------------------------

CACHED_PER_1M = 500_000
CACHE_WRITE_PER_1M = 3_000_000


def cache_priced_cost(*, prompt: int, cached: int, written: int, completion: int) -> int:
    """billing.pricing.token_cost's rule at this module's prices: cached and written input at the cache
    prices, the rest at the input price, reasoning as output; rounded up once per call."""
    numerator = (
        (prompt - cached - written) * INPUT_PER_1M
        + cached * CACHED_PER_1M
        + written * CACHE_WRITE_PER_1M
        + completion * OUTPUT_PER_1M
    )
    return -(-numerator // 1_000_000)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
def test_cached_and_reasoning_tokens_are_recorded_and_priced_at_cache_prices(
    client, route_to, raw_key, fake_upstream, kind, stream
):
    routed = route_to(kind)
    routed.model.cached_input_per_1m = CACHED_PER_1M
    routed.model.cache_write_per_1m = CACHE_WRITE_PER_1M
    routed.model.save()
    catalog_cache_clear()
    fake_upstream.set(prompt_tokens=1001, cached_tokens=601, reasoning_tokens=12, completion_tokens=41)
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}

    response = post(client, "/v1/chat/completions", body, {"Authorization": f"Bearer {raw_key}"})
    assert response.status_code == 200
    raw = read_body(response)

    record = only_record()
    # Anthropic reports no separate count of thinking tokens: they are output tokens like the rest.
    reasoning = 0 if kind == "anthropic" else 12
    assert (record.upstream_kind, record.stream, record.status_code) == (kind, stream, 200)
    assert (record.prompt_tokens, record.cached_tokens, record.cache_write_tokens) == (1001, 601, 0)
    assert (record.completion_tokens, record.reasoning_tokens) == (41, reasoning)
    assert not record.usage_estimated
    cost = cache_priced_cost(prompt=1001, cached=601, written=0, completion=41)
    assert cost == 1429  # 400 x 2 + 601 x 0.5 + 41 x 8 = 1428.5 micro-USD, rounded up once
    assert record.cost_micro_usd == cost
    if stream:
        usage = json.loads([p for p in sse_payloads(raw) if p != b"[DONE]"][-1])["usage"]
    else:
        assert response["X-Request-Cost-Micro-Usd"] == str(cost)
        usage = json.loads(raw)["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 601
    assert usage["completion_tokens_details"]["reasoning_tokens"] == reasoning


# --- translated streams that end badly -------------------------------------------------------

# One client protocol per upstream protocol it is translated from: every stream
# writer and every stream reader takes part.
PAIRS = [
    ("anthropic.messages", "openai"),
    ("openai.responses", "anthropic"),
    ("gemini", "anthropic"),
    ("openai.chat", "gemini"),
]


def stream_request(protocol: str, raw_key: str) -> tuple[str, dict, dict]:
    """(path, body, headers) of a streamed request saying PROMPT in `protocol`."""
    bearer = {"Authorization": f"Bearer {raw_key}"}
    if protocol == "anthropic.messages":
        return "/v1/messages", anthropic_body(stream=True), {"x-api-key": raw_key}
    if protocol == "openai.responses":
        return "/v1/responses", {"model": MODEL_ID, "input": PROMPT, "stream": True}, bearer
    if protocol == "gemini":
        return gemini_path(action="streamGenerateContent") + "?alt=sse", gemini_body(), {"x-goog-api-key": raw_key}
    return (
        "/v1/chat/completions",
        {"model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}], "stream": True},
        bearer,
    )


def delivered_text(protocol: str, payloads: list[bytes]) -> str:
    """The answer's text in a client's stream events."""
    text = ""
    for payload in payloads:
        if payload == b"[DONE]" or not payload.startswith(b"{"):
            continue
        event = json.loads(payload)
        if protocol == "anthropic.messages":
            text += (event.get("delta") or {}).get("text", "") if event["type"] == "content_block_delta" else ""
        elif protocol == "openai.responses":
            text += event["delta"] if event["type"] == "response.output_text.delta" else ""
        elif protocol == "gemini":
            for candidate in event.get("candidates") or ():
                text += "".join(p.get("text", "") for p in (candidate.get("content") or {}).get("parts") or ())
        else:
            text += "".join(c["delta"].get("content") or "" for c in event.get("choices") or ())
    return text


def assert_ends_with_the_protocols_error(protocol: str, raw: bytes) -> None:
    frames = [f for f in raw.replace(b"\r\n", b"\n").split(b"\n\n") if f.strip()]
    if protocol == "anthropic.messages":
        assert frames[-1].startswith(b"event: error\ndata: "), frames[-1]
        event = json.loads(frames[-1].split(b"data: ", 1)[1])
        assert event["type"] == "error" and event["error"]["type"] == "api_error"
        assert b"message_stop" not in raw
    elif protocol == "openai.responses":
        assert frames[-1].startswith(b"event: response.failed\n"), frames[-1]
        response = json.loads(frames[-1].split(b"data: ", 1)[1])["response"]
        assert response["status"] == "failed" and response["error"]["code"] == "server_error"
        assert b"response.completed" not in raw
    elif protocol == "gemini":
        # As Google does: a bare JSON object after the last SSE chunk, outside SSE framing.
        error = json.loads(frames[-1])["error"]
        assert (error["code"], error["status"]) == (503, "UNAVAILABLE")
        assert b'"finishReason"' not in raw
    else:
        payloads = sse_payloads(raw)
        assert payloads[-1] == b"[DONE]"
        error = json.loads(payloads[-2])["error"]
        assert error["code"] == "upstream_error" and error["message"]
        assert b'"finish_reason":"stop"' not in raw


def stream_through(client, protocol: str, raw_key: str):
    path, body, headers = stream_request(protocol, raw_key)
    response = post(client, path, body, headers)
    assert response.status_code == 200, response.content
    return read_body(response)


@pytest.mark.parametrize("protocol, kind", PAIRS)
def test_an_upstream_cut_mid_stream_ends_with_the_clients_error_event(
    client, route_to, raw_key, fake_upstream, protocol, kind
):
    route_to(kind)
    fake_upstream.reply(LONG_REPLY)
    fake_upstream.set(reset_after_events=5)
    raw = stream_through(client, protocol, raw_key)

    assert_ends_with_the_protocols_error(protocol, raw)
    delivered = delivered_text(protocol, sse_payloads(raw))
    assert delivered and LONG_REPLY.startswith(delivered) and delivered != LONG_REPLY
    record = only_record()
    assert (record.status_code, record.error_type) == (502, "upstream_stream_broken")
    assert (record.protocol, record.upstream_kind, record.stream) == (protocol, kind, True)
    assert not record.client_disconnected
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)


@pytest.mark.parametrize("protocol, kind", PAIRS)
def test_an_upstream_stream_without_its_end_marker_ends_with_the_clients_error_event(
    client, route_to, raw_key, fake_upstream, protocol, kind
):
    route_to(kind)
    fake_upstream.set(omit_done=True)
    raw = stream_through(client, protocol, raw_key)

    assert_ends_with_the_protocols_error(protocol, raw)
    record = only_record()
    assert (record.status_code, record.error_type) == (502, "upstream_stream_incomplete")
    assert (record.protocol, record.upstream_kind) == (protocol, kind)
    assert not record.client_disconnected
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)


@pytest.mark.parametrize("protocol, kind", PAIRS)
def test_a_translated_stream_without_usage_is_priced_on_an_estimate(
    client, route_to, raw_key, fake_upstream, protocol, kind
):
    route_to(kind)
    fake_upstream.set(omit_usage=True)
    raw = stream_through(client, protocol, raw_key)

    assert delivered_text(protocol, sse_payloads(raw)) == DEFAULT_REPLY
    record = only_record()
    assert (record.status_code, record.error_type, record.usage_estimated) == (200, "", True)
    assert record.prompt_tokens == estimate_tokens(len(PROMPT))
    assert record.completion_tokens == estimate_tokens(len(DEFAULT_REPLY))
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)


# Client events sure to have arrived once the fake holds its stream after three words
# (the Gemini writer holds one part back; the others open with their own events).
EVENTS_BEFORE_HOLD = {"anthropic.messages": 5, "openai.responses": 6, "gemini": 2, "openai.chat": 3}
# Upstream events carrying the first three words: OpenAI opens with a role chunk, Anthropic with three events.
HOLD_AFTER = {"openai": 4, "anthropic": 6, "gemini": 3}


def read_frames(stream: RawStream, count: int) -> list[bytes]:
    """The first `count` SSE payloads, whatever the line ends (Gemini's are CRLF, which read_events misses)."""
    while stream._buffer.replace(b"\r\n", b"\n").count(b"\n\n") < count:
        assert stream._recv(), "the stream ended early"
    return sse_payloads(stream._buffer)[:count]


@pytest.mark.parametrize("protocol, kind", PAIRS)
def test_a_client_hanging_up_a_translated_stream_is_recorded_once(
    live_api, route_to, raw_key, fake_upstream, protocol, kind
):
    route_to(kind)
    fake_upstream.reply(LONG_REPLY, prompt_tokens=50)
    fake_upstream.set(hold_after_events=HOLD_AFTER[kind], chunk_delay=0.01)
    path, body, headers = stream_request(protocol, raw_key)
    stream = RawStream(live_api, path, body, headers)

    first = read_frames(stream, EVENTS_BEFORE_HOLD[protocol])
    stream.hang_up()
    fake_upstream.release_stream()  # the upstream goes on; the gateway's next writes fail
    record = wait_for_record()

    assert stream.status == 200
    delivered = delivered_text(protocol, first)
    assert delivered and LONG_REPLY.startswith(delivered)
    assert record.request_id == stream.headers["x-request-id"]
    assert (record.protocol, record.upstream_kind, record.stream) == (protocol, kind, True)
    assert record.client_disconnected is True
    assert record.error_type == "client_disconnected"
    assert record.usage_estimated is True
    # Priced on what the gateway relayed before the write that failed, never on the whole answer.
    assert estimate_tokens(len(delivered)) <= record.completion_tokens < estimate_tokens(len(LONG_REPLY))
    assert record.prompt_tokens > 0
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens) > 0
    time.sleep(0.2)  # a second record would be written by now
    assert UsageRecord.objects.count() == 1


@pytest.mark.parametrize("protocol, kind", [("openai.responses", "anthropic"), ("openai.chat", "gemini")])
def test_a_hung_up_stream_is_billed_the_input_the_provider_reported(
    live_api, route_to, raw_key, fake_upstream, protocol, kind
):
    route_to(kind)
    fake_upstream.reply(LONG_REPLY, prompt_tokens=50)
    fake_upstream.set(hold_after_events=HOLD_AFTER[kind], chunk_delay=0.01)
    path, body, headers = stream_request(protocol, raw_key)
    stream = RawStream(live_api, path, body, headers)
    read_frames(stream, EVENTS_BEFORE_HOLD[protocol])
    stream.hang_up()
    fake_upstream.release_stream()

    assert wait_for_record().prompt_tokens == 50


# --- token counting ---------------------------------------------------------------------------

COUNT_BODY = {"model": MODEL_ID, "system": "Be brief.", "messages": [{"role": "user", "content": PROMPT}]}


def test_count_tokens_asks_an_anthropic_upstream_for_free(client, route_to, limited_key, fake_upstream):
    routed = route_to("anthropic")
    fake_upstream.set(prompt_tokens=1234)
    for _ in range(3):  # counting is not rate limited: the key's one request a minute is still unused
        response = post(client, "/v1/messages/count_tokens", COUNT_BODY, {"x-api-key": limited_key})
        assert response.status_code == 200, response.content
        assert json.loads(response.content) == {"input_tokens": 1234}
        assert response["X-Beluga-Token-Count"] == "provider"
    received = fake_upstream.requests[-1]
    assert received.path == "/v1/messages/count_tokens"
    assert received.json["model"] == UPSTREAM_MODEL
    assert received.json["system"] == [{"type": "text", "text": "Be brief."}]
    assert received.headers["x-api-key"] == routed.credential
    assert records() == []
    assert post(client, "/v1/messages", anthropic_body(), {"x-api-key": limited_key}).status_code == 200


def test_count_tokens_estimates_for_an_openai_upstream(client, route_to, raw_key, fake_upstream):
    route_to("openai")
    response = post(client, "/api/v1/messages/count_tokens", COUNT_BODY, {"x-api-key": raw_key})
    assert response.status_code == 200
    expected = estimate_conversation_tokens(anthropic_messages.read_count_tokens_request(COUNT_BODY))
    assert json.loads(response.content) == {"input_tokens": expected}
    assert response["X-Beluga-Token-Count"] == "estimate"
    assert fake_upstream.requests == []
    assert records() == []


def test_count_tokens_falls_back_to_an_estimate_when_the_provider_fails(client, route_to, raw_key, fake_upstream):
    route_to("anthropic")
    fake_upstream.fail_with(500)
    response = post(client, "/v1/messages/count_tokens", COUNT_BODY, {"x-api-key": raw_key})
    assert response.status_code == 200
    expected = estimate_conversation_tokens(anthropic_messages.read_count_tokens_request(COUNT_BODY))
    assert json.loads(response.content) == {"input_tokens": expected}
    assert response["X-Beluga-Token-Count"] == "estimate"
    assert len(fake_upstream.requests) == 1


@pytest.mark.parametrize("kind, source", [("anthropic", "provider"), ("openai", "estimate")])
def test_the_anthropic_sdk_counts_tokens(live_api, route_to, raw_key, fake_upstream, kind, source):
    route_to(kind)
    fake_upstream.set(prompt_tokens=1234)
    with anthropic.Anthropic(base_url=live_api, api_key=raw_key, max_retries=0, timeout=20) as sdk:
        raw = sdk.messages.with_raw_response.count_tokens(
            model=MODEL_ID, system="Be brief.", messages=[{"role": "user", "content": PROMPT}]
        )
    expected = 1234
    if source == "estimate":
        expected = estimate_conversation_tokens(anthropic_messages.read_count_tokens_request(COUNT_BODY))
    assert raw.parse().input_tokens == expected
    assert raw.headers["x-beluga-token-count"] == source
    assert UsageRecord.objects.count() == 0


@pytest.mark.parametrize("kind, source", [("gemini", "provider"), ("openai", "estimate")])
def test_the_genai_sdk_counts_tokens(live_api, route_to, raw_key, fake_upstream, kind, source):
    routed = route_to(kind)
    fake_upstream.set(prompt_tokens=1234)
    sdk = genai.Client(api_key=raw_key, http_options=genai_types.HttpOptions(base_url=live_api, timeout=20_000))
    counted = sdk.models.count_tokens(model=MODEL_ID, contents=PROMPT)

    headers = {k.lower(): v for k, v in (counted.sdk_http_response.headers or {}).items()}
    assert headers["x-beluga-token-count"] == source
    if source == "provider":
        assert counted.total_tokens == 1234
        received = fake_upstream.requests[-1]
        assert received.path == f"/v1beta/models/{UPSTREAM_MODEL}:countTokens"
        assert received.headers["x-goog-api-key"] == routed.credential
        assert received.json["generateContentRequest"]["contents"] == gemini_body()["contents"]
    else:
        assert counted.total_tokens == estimate_conversation_tokens(gemini.read_request(gemini_body(), model=MODEL_ID))
        assert fake_upstream.requests == []
    assert UsageRecord.objects.count() == 0


# --- GET /v1beta/models ----------------------------------------------------------------------

EMBED_ID = "test-embed"
EMBED_UPSTREAM_MODEL = "upstream-embed"
EMBED_INPUT_PER_1M = 130_000


@pytest.fixture
def embed_route_to(db, fake_upstream):
    """`embed_route_to(kind)`: the embedding model `test-embed` routed to the fake upstream speaking `kind`."""

    def make(kind: str = "openai") -> ChatRoute:
        upstream = Upstream.objects.create(
            name=f"fake-embed-{kind}",
            kind=kind,
            base_url=fake_upstream.base_url if kind == "openai" else fake_upstream.base_url.removesuffix("/v1"),
            api_key="upstream-secret-" + secrets.token_hex(8),
            connect_timeout=2.0,
            read_timeout=2.0,
        )
        model = AIModel.objects.create(
            slug=EMBED_ID,
            name="Test Embedding",
            vendor="OpenAI",
            category=Category.EMBEDDING,
            supports_stream=False,
            context_window=8192,
            input_per_1m=EMBED_INPUT_PER_1M,
        )
        route = Route.objects.create(model=model, upstream=upstream, upstream_model=EMBED_UPSTREAM_MODEL)
        catalog_cache_clear()
        return ChatRoute(model=model, upstream=upstream, route=route)

    return make


def listed_chat_models() -> list[str]:
    rows = AIModel.objects.filter(enabled=True, category__in=CHAT_CATEGORIES).order_by("vendor", "slug")
    return [f"models/{slug}" for slug in rows.values_list("slug", flat=True)]


@pytest.mark.parametrize("prefix", GEMINI_PREFIXES)
def test_the_gemini_model_list_pages_through_chat_models_only(client, chat_route, embed_route_to, prefix):
    embed_route_to("openai")
    AIModel.objects.filter(category=Category.CHAT).exclude(slug=MODEL_ID).order_by("slug").first().delete()
    names, token, pages = [], None, 0
    while True:
        query = {"pageSize": 30, **({"pageToken": token} if token else {})}
        response = client.get(f"{prefix}/models", query)
        assert response.status_code == 200, response.content
        page = json.loads(response.content)
        assert set(page) <= {"models", "nextPageToken"}
        assert len(page["models"]) <= 30
        names += [m["name"] for m in page["models"]]
        pages += 1
        token = page.get("nextPageToken")
        if not token:
            break
    expected = listed_chat_models()
    assert names == expected
    assert pages == -(-len(expected) // 30) > 1
    assert f"models/{MODEL_ID}" in names and f"models/{EMBED_ID}" not in names


def test_a_gemini_model_is_described_as_google_describes_one(client, chat_route, raw_key):
    response = client.get(f"/v1beta/models/{MODEL_ID}", headers={"x-goog-api-key": raw_key})
    assert response.status_code == 200
    assert json.loads(response.content) == {
        "name": f"models/{MODEL_ID}",
        "baseModelId": MODEL_ID,
        "version": "001",
        "displayName": "Test Model",
        "description": "A model served by the fake upstream.",
        "inputTokenLimit": 128_000,
        "outputTokenLimit": 4096,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    }


@pytest.mark.parametrize("prefix", GEMINI_PREFIXES)
@pytest.mark.parametrize("model", ["no-such-model", EMBED_ID])
def test_an_unknown_or_embedding_model_is_not_found_in_the_gemini_list(
    client, chat_route, embed_route_to, prefix, model
):
    embed_route_to("openai")
    assert model in google_error(client.get(f"{prefix}/models/{model}"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "query, named",
    [({"pageSize": "ten"}, "pageSize"), ({"pageToken": "!!!"}, "pageToken"), ({"key": "bapi_wrong"}, "API key")],
)
def test_the_gemini_model_list_refuses_bad_paging_and_wrong_keys(client, chat_route, query, named):
    response = client.get("/v1beta/models", query)
    if "key" in query:
        assert named in google_error(response, 401, "UNAUTHENTICATED")
    else:
        assert named in google_error(response, 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("page_size", ["0", "-3"])
def test_a_page_size_of_zero_means_the_default_and_a_negative_one_is_refused(client, chat_route, page_size):
    response = client.get("/v1beta/models", {"pageSize": page_size})
    if page_size == "0":
        assert response.status_code == 200
        assert len(json.loads(response.content)["models"]) == 50
    else:
        assert "pageSize" in google_error(response, 400, "INVALID_ARGUMENT")


def test_the_genai_sdk_lists_and_gets_models(live_api, chat_route, embed_route_to, raw_key):
    embed_route_to("openai")
    sdk = genai.Client(api_key=raw_key, http_options=genai_types.HttpOptions(base_url=live_api, timeout=20_000))

    listed = list(sdk.models.list(config={"page_size": 30}))
    assert [m.name for m in listed] == listed_chat_models()

    model = sdk.models.get(model=MODEL_ID)
    assert (model.name, model.display_name) == (f"models/{MODEL_ID}", "Test Model")
    assert (model.input_token_limit, model.output_token_limit) == (128_000, 4096)
    assert model.supported_actions == ["generateContent", "streamGenerateContent", "countTokens"]
    for missing in ("no-such-model", EMBED_ID):
        with pytest.raises(genai_errors.ClientError) as caught:
            sdk.models.get(model=missing)
        assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"


# --- POST /v1/embeddings ------------------------------------------------------------------------

TEXTS = ["The quick brown fox.", "Hello"]


def float32(values: list[float]) -> list[float]:
    """The values as little-endian float32 carries them (what base64 embeddings hold)."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


@pytest.fixture
def openai_sdk(live_api, raw_key):
    with openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, max_retries=0, timeout=20) as sdk:
        yield sdk


def test_embeddings_through_an_openai_upstream(openai_sdk, embed_route_to, fake_upstream):
    routed = embed_route_to("openai")
    fake_upstream.set(prompt_tokens=23)
    result = openai_sdk.embeddings.create(model=EMBED_ID, input=TEXTS)

    assert result.model == EMBED_ID
    assert [d.embedding for d in result.data] == [float32(embedding_vector(t)) for t in TEXTS]
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (23, 23)
    received = fake_upstream.requests[-1]
    assert received.path == "/v1/embeddings"
    assert received.json["model"] == EMBED_UPSTREAM_MODEL and received.json["input"] == TEXTS
    assert received.headers["authorization"] == f"Bearer {routed.credential}"
    record = only_record()
    assert (record.model, record.upstream_model, record.upstream_kind) == (EMBED_ID, EMBED_UPSTREAM_MODEL, "openai")
    assert (record.protocol, record.endpoint, record.status_code) == ("openai.embeddings", "embeddings", 200)
    assert (record.prompt_tokens, record.completion_tokens, record.usage_estimated) == (23, 0, False)
    assert record.cost_micro_usd == -(-23 * EMBED_INPUT_PER_1M // 1_000_000) == 3  # 2.99 rounded up


def test_embeddings_through_a_gemini_upstream_are_priced_on_an_estimate(openai_sdk, embed_route_to, fake_upstream):
    routed = embed_route_to("gemini")
    result = openai_sdk.embeddings.create(model=EMBED_ID, input=TEXTS, dimensions=4)

    assert result.model == EMBED_ID
    assert [d.embedding for d in result.data] == [float32(embedding_vector(t, 4)) for t in TEXTS]
    assert [d.index for d in result.data] == [0, 1]
    tokens = estimate_tokens(sum(len(t) for t in TEXTS))
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (tokens, tokens)
    received = fake_upstream.requests[-1]
    assert received.path == f"/v1beta/models/{EMBED_UPSTREAM_MODEL}:batchEmbedContents"
    assert received.headers["x-goog-api-key"] == routed.credential
    assert received.json["requests"] == [
        {"model": f"models/{EMBED_UPSTREAM_MODEL}", "content": {"parts": [{"text": t}]}, "outputDimensionality": 4}
        for t in TEXTS
    ]
    record = only_record()
    assert (record.upstream_kind, record.status_code, record.usage_estimated) == ("gemini", 200, True)
    assert record.prompt_tokens == tokens
    assert record.cost_micro_usd == -(-tokens * EMBED_INPUT_PER_1M // 1_000_000)


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_base64_embeddings_decode_to_the_float_ones(openai_sdk, embed_route_to, kind):
    embed_route_to(kind)
    floats = openai_sdk.embeddings.create(model=EMBED_ID, input=TEXTS, encoding_format="float")
    encoded = openai_sdk.embeddings.create(model=EMBED_ID, input=TEXTS, encoding_format="base64")

    assert [d.embedding for d in floats.data] == [embedding_vector(t) for t in TEXTS]
    for as_float, as_base64 in zip(floats.data, encoded.data, strict=True):
        assert isinstance(as_base64.embedding, str)
        raw = base64.b64decode(as_base64.embedding)
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == float32(as_float.embedding)


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"model": EMBED_ID}, 400, "input"),
        ({"model": EMBED_ID, "input": []}, 400, "input"),
        ({"model": EMBED_ID, "input": ["fine", ""]}, 400, "input[1]"),
        ({"model": EMBED_ID, "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": EMBED_ID, "input": "x", "dimensions": 0}, 400, "dimensions"),
        ({"input": "x"}, 400, "model"),
        ({"model": MODEL_ID, "input": "x"}, 400, "model"),
        ({"model": "no-such-model", "input": "x"}, 404, "model"),
    ],
)
def test_invalid_embedding_requests_are_refused_naming_the_parameter(
    client, chat_route, embed_route_to, raw_key, fake_upstream, body, status, param
):
    embed_route_to("openai")
    error = openai_error(post(client, "/v1/embeddings", body, {"Authorization": f"Bearer {raw_key}"}), status)
    assert error["param"] == param
    if body.get("model") == MODEL_ID:
        assert error["code"] == "model_not_supported"
    assert fake_upstream.requests == []
    assert records() == []


def test_token_arrays_are_refused_for_a_gemini_embedding_upstream(client, embed_route_to, raw_key, fake_upstream):
    embed_route_to("gemini")
    body = {"model": EMBED_ID, "input": [[1, 2, 3]]}
    error = openai_error(post(client, "/v1/embeddings", body, {"Authorization": f"Bearer {raw_key}"}), 400)
    assert error["param"] == "input"
    assert fake_upstream.requests == []


@pytest.mark.parametrize("kind", ["openai", "gemini"])
@pytest.mark.parametrize("upstream_status, status", [(400, 400), (401, 502), (429, 429), (500, 502), (503, 503)])
def test_an_upstream_embedding_error_is_mapped_and_recorded(
    client, embed_route_to, raw_key, fake_upstream, kind, upstream_status, status
):
    embed_route_to(kind)
    fake_upstream.fail_with(upstream_status)
    body = {"model": EMBED_ID, "input": TEXTS}
    error = openai_error(post(client, "/v1/embeddings", body, {"Authorization": f"Bearer {raw_key}"}), status)
    assert "upstream-secret" not in error["message"]
    record = only_record()
    assert (record.status_code, record.upstream_kind, record.cost_micro_usd) == (status, kind, 0)


def test_embeddings_from_an_openai_upstream_without_usage_are_estimated(client, embed_route_to, raw_key, fake_upstream):
    embed_route_to("openai")
    fake_upstream.set(omit_usage=True)
    body = {"model": EMBED_ID, "input": TEXTS}
    response = post(client, "/v1/embeddings", body, {"Authorization": f"Bearer {raw_key}"})
    assert response.status_code == 200
    tokens = estimate_tokens(sum(len(t) for t in TEXTS))
    record = only_record()
    assert json.loads(response.content)["usage"] == {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "cost": f"0.{record.cost_micro_usd:06d}",
        "cost_micro_usd": record.cost_micro_usd,
    }
    assert (record.prompt_tokens, record.usage_estimated) == (tokens, True)
    assert response["X-Request-Cost-Micro-Usd"] == str(record.cost_micro_usd)


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_an_unreadable_embedding_answer_is_a_502(client, embed_route_to, raw_key, fake_upstream, kind):
    embed_route_to(kind)
    fake_upstream.set(invalid_json=True)
    body = {"model": EMBED_ID, "input": TEXTS}
    openai_error(post(client, "/v1/embeddings", body, {"Authorization": f"Bearer {raw_key}"}), 502)
    record = only_record()
    assert (record.status_code, record.error_type, record.cost_micro_usd) == (502, "upstream_invalid_response", 0)


def test_embeddings_share_the_chat_rate_limit(client, embed_route_to, limited_key):
    embed_route_to("openai")
    body = {"model": EMBED_ID, "input": TEXTS}
    allowed, response = in_one_window(
        lambda: [post(client, "/v1/embeddings", body, {"Authorization": f"Bearer {limited_key}"}) for _ in "12"]
    )
    assert allowed.status_code == 200
    assert openai_error(response, 429)["code"] == "rate_limit_exceeded"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["X-RateLimit-Remaining-Requests"] == "0"


def test_the_openai_sdk_sees_an_upstream_rate_limit_on_embeddings(openai_sdk, embed_route_to, fake_upstream):
    embed_route_to("gemini")
    fake_upstream.fail_with(429)
    with pytest.raises(openai.RateLimitError) as caught:
        openai_sdk.embeddings.create(model=EMBED_ID, input=TEXTS)
    assert caught.value.body["code"] == "upstream_rate_limited"
    assert caught.value.response.headers["retry-after"] == "1"


# --- images by URL to a Gemini upstream -----------------------------------------------------------


class _ImageHandler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def do_GET(self):
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if self.path != "/cat.png":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)


@pytest.fixture(scope="module")
def image_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    server.daemon_threads = True
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="image-server", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def image_request(protocol: str, url: str, raw_key: str) -> tuple[str, dict, dict]:
    if protocol == "anthropic.messages":
        content = [{"type": "image", "source": {"type": "url", "url": url}}, {"type": "text", "text": "What is this?"}]
        return "/v1/messages", anthropic_body(messages=[{"role": "user", "content": content}]), {"x-api-key": raw_key}
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": content}]}
    return "/v1/chat/completions", body, {"Authorization": f"Bearer {raw_key}"}


@pytest.mark.parametrize("protocol", ["openai.chat", "anthropic.messages"])
def test_an_image_url_is_fetched_and_sent_inline_to_gemini(
    client, settings, route_to, raw_key, fake_upstream, image_server, protocol
):
    settings.BELUGA = {**settings.BELUGA, "IMAGE_FETCH_ALLOW_PRIVATE": True}
    route_to("gemini")
    image_server.hits.clear()
    url = f"http://127.0.0.1:{image_server.server_address[1]}/cat.png"
    path, body, headers = image_request(protocol, url, raw_key)

    response = post(client, path, body, headers)
    assert response.status_code == 200, response.content
    assert image_server.hits == ["/cat.png"]
    parts = [p for c in fake_upstream.requests[-1].json["contents"] for p in c["parts"]]
    [inline] = [p["inlineData"] for p in parts if "inlineData" in p]
    assert inline["mimeType"] == "image/png"
    assert base64.b64decode(inline["data"]) == PNG
    assert url not in fake_upstream.requests[-1].raw()


@pytest.mark.parametrize("protocol", ["openai.chat", "anthropic.messages"])
def test_a_private_image_url_is_refused_before_anything_is_fetched_or_sent(
    client, settings, route_to, raw_key, fake_upstream, image_server, protocol
):
    settings.BELUGA = {**settings.BELUGA, "IMAGE_FETCH_ALLOW_PRIVATE": False}
    route_to("gemini")
    image_server.hits.clear()
    url = f"http://127.0.0.1:{image_server.server_address[1]}/cat.png"
    path, body, headers = image_request(protocol, url, raw_key)

    response = post(client, path, body, headers)
    if protocol == "anthropic.messages":
        message = anthropic_error(response, 400, "invalid_request_error")
    else:
        error = openai_error(response, 400)
        assert error["param"] == "messages"
        message = error["message"]
    assert "image" in message
    assert image_server.hits == []
    assert fake_upstream.requests == []
    assert records() == []
