"""The OpenAI stream relay's fast path must give the same answer as a full parse."""

import orjson
import pytest

from gateway.providers.openai import StreamRelay


def chunk(content=None, *, model="gpt-4o-mini-2024-07-18", usage=None, choices=True, **extra):
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    body["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}] if choices else []
    body["usage"] = usage
    body.update(extra)
    return orjson.dumps(body)


@pytest.mark.parametrize("keep_usage", [True, False])
def test_fast_path_rewrites_model_like_a_full_parse(keep_usage):
    relay = StreamRelay(public_model="my-model", keep_usage=keep_usage)
    texts = ["Hello", ' "quoted\\" \\\\', " naïve", " 世界"]
    out = [orjson.loads(relay.relay(chunk(t))) for t in texts]
    assert relay.pattern == b'"model":"gpt-4o-mini-2024-07-18"'  # learned from the first chunk
    assert [o["model"] for o in out] == ["my-model"] * 4
    assert [o["choices"][0]["delta"]["content"] for o in out] == texts
    assert all(("usage" in o) is keep_usage for o in out)
    # Exact for ASCII, an overcount (never an undercount) for escapes and non-ASCII.
    assert relay.delivered_chars >= sum(len(t) for t in texts)


def test_usage_chunk_is_read_and_dropped_unless_asked():
    relay = StreamRelay(public_model="my-model", keep_usage=False)
    relay.relay(chunk("Hi"))
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert relay.relay(chunk(usage=usage, choices=False)) is None
    assert (relay.usage.input_tokens, relay.usage.output_tokens) == (7, 3)

    asked = StreamRelay(public_model="my-model", keep_usage=True)
    asked.relay(chunk("Hi"))
    forwarded = orjson.loads(asked.relay(chunk(usage=usage, choices=False)))
    assert forwarded["usage"] == usage and forwarded["model"] == "my-model"


def test_an_error_event_is_passed_on_in_beluga_words_and_flagged():
    relay = StreamRelay(public_model="my-model", keep_usage=False, secret="sk-upstream-secret")
    relay.relay(chunk("Hi"))
    error = orjson.dumps({"error": {"message": "overloaded for sk-upstream-secret", "type": "server_error"}})
    out = orjson.loads(relay.relay(error))["error"]
    assert out["type"] == "service_unavailable_error"
    assert out["code"] == "upstream_error"
    assert "overloaded for ***" in out["message"]
    assert "sk-upstream-secret" not in out["message"]
    assert relay.error


def test_an_error_event_given_as_a_bare_string_is_relayed_as_an_error_object():
    relay = StreamRelay(public_model="my-model", keep_usage=False)
    out = orjson.loads(relay.relay(orjson.dumps({"error": "model is loading"})))["error"]
    assert out["type"] == "service_unavailable_error"
    assert "model is loading" in out["message"]


def test_a_chunk_naming_another_model_takes_the_full_parse():
    relay = StreamRelay(public_model="my-model", keep_usage=False)
    relay.relay(chunk("a"))
    out = orjson.loads(relay.relay(chunk("b", model="other-upstream-name")))
    assert out["model"] == "my-model"
    assert relay.relay(b": keep-alive") is None
