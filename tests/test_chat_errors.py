"""Every error path of the chat API answers in OpenAI's error shape, with X-Request-Id, and never
leaks a stack trace or the upstream credential: upstream failures, broken streams, unknown paths,
wrong methods and oversized bodies."""

from __future__ import annotations

import json
import socket

import openai
import pytest
from django.conf import settings

from billing.models import UsageRecord
from catalog.selectors import catalog_cache_clear
from tests.fake_upstream import words
from tests.fixtures_gateway import MODEL_ID, UPSTREAM_MODEL, chat_body, error_of, post_chat, sse_chunks, sse_payloads

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

SERVICE_UNAVAILABLE = (502, 503)


def assert_safe_error(response, chat_route) -> None:
    """No stack trace, no upstream credential, no internal host in an error body; request id present."""
    text = response.content.decode()
    assert response["X-Request-Id"]
    assert "Traceback" not in text
    assert 'File "' not in text
    assert chat_route.credential not in text
    assert "upstream-secret" not in text
    assert "127.0.0.1" not in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- upstream failures before any byte of the answer ------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("upstream_status", [500, 502, 503])
def test_upstream_server_error_is_service_unavailable(
    client, chat_route, raw_key, fake_upstream, upstream_status, stream
):
    fake_upstream.fail_with(upstream_status)

    response = post_chat(client, raw_key, chat_body(stream=stream))

    # An upstream's 503 (unavailable, retry) stays a 503; its other failures are the gateway's 502.
    assert response.status_code == (503 if upstream_status == 503 else 502)
    assert not response.streaming  # a failure before the stream starts is a plain JSON error
    assert error_of(response)["type"] == "service_unavailable_error"
    assert_safe_error(response, chat_route)


def test_upstream_503_is_503(client, chat_route, raw_key, fake_upstream):
    fake_upstream.fail_with(503)

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 503


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_rate_limit_is_429_rate_limit_error(client, chat_route, raw_key, fake_upstream, stream):
    fake_upstream.fail_with(429)

    response = post_chat(client, raw_key, chat_body(stream=stream))

    assert response.status_code == 429
    assert error_of(response)["type"] == "rate_limit_error"
    assert_safe_error(response, chat_route)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_bad_request_is_400_with_the_upstream_message(client, chat_route, raw_key, fake_upstream, stream):
    message = "This model's maximum context length is 128000 tokens. However, you requested 200000 tokens."
    fake_upstream.fail_with(400, message)

    response = post_chat(client, raw_key, chat_body(stream=stream))

    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert message in error["message"]
    assert_safe_error(response, chat_route)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_404_is_the_route_not_the_caller(client, chat_route, raw_key, fake_upstream, stream):
    # The route names a model the provider does not serve: not the caller's fault, and the
    # provider's words (which name the upstream's model) stay in the log.
    fake_upstream.fail_with(404, f"The model `{UPSTREAM_MODEL}` does not exist or you do not have access to it.")

    response = post_chat(client, raw_key, chat_body(stream=stream))

    assert response.status_code == 502
    error = error_of(response)
    assert (error["type"], error["code"]) == ("service_unavailable_error", "upstream_model_not_found")
    assert UPSTREAM_MODEL not in response.content.decode()
    assert_safe_error(response, chat_route)
    [record] = UsageRecord.objects.all()
    assert (record.status_code, record.cost_micro_usd) == (502, 0)


def test_upstream_message_quoting_the_credential_is_scrubbed(client, chat_route, raw_key, fake_upstream):
    fake_upstream.fail_with(400, f"Key {chat_route.credential} may not use this parameter.")

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 400
    assert_safe_error(response, chat_route)


def test_upstream_refusing_beluga_credential_is_not_blamed_on_the_customer_key(
    client, chat_route, raw_key, fake_upstream
):
    # The provider says Beluga's own credential is wrong (and quotes it, as OpenAI does in part):
    # the customer's key is fine, so this must not look like a 401 for the customer.
    fake_upstream.fail_with(401, f"Incorrect API key provided: {chat_route.credential}.")

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code in SERVICE_UNAVAILABLE
    assert error_of(response)["type"] == "service_unavailable_error"
    assert_safe_error(response, chat_route)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_timeout_is_service_unavailable(client, chat_route, raw_key, fake_upstream, stream):
    chat_route.update_upstream(read_timeout=0.3)
    fake_upstream.set(delay_before_headers=10)  # ended by the fixture's reset at teardown

    response = post_chat(client, raw_key, chat_body(stream=stream))

    assert response.status_code == 502
    error = error_of(response)
    assert (error["type"], error["code"]) == ("service_unavailable_error", "upstream_timeout")
    assert_safe_error(response, chat_route)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_connection_refused_is_service_unavailable(client, chat_route, raw_key, fake_upstream, stream):
    chat_route.update_upstream(base_url=f"http://127.0.0.1:{free_port()}/v1")

    response = post_chat(client, raw_key, chat_body(stream=stream))

    assert response.status_code == 503
    error = error_of(response)
    assert (error["type"], error["code"]) == ("service_unavailable_error", "upstream_error")
    assert_safe_error(response, chat_route)


@pytest.mark.parametrize("via", ["raw", "sdk"])
def test_stream_is_refused_for_a_model_that_cannot_stream(
    client, openai_client, chat_route, raw_key, fake_upstream, via
):
    chat_route.model.supports_stream = False
    chat_route.model.save(update_fields=["supports_stream"])
    catalog_cache_clear()

    if via == "sdk":
        with pytest.raises(openai.BadRequestError) as raised:
            openai_client.chat.completions.create(
                model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], stream=True
            )
        assert raised.value.param == "stream"
    else:
        response = post_chat(client, raw_key, chat_body(stream=True))
        assert response.status_code == 400
        error = error_of(response)
        assert (error["type"], error["param"]) == ("invalid_request_error", "stream")
    assert fake_upstream.chat_requests == []
    assert post_chat(client, raw_key, chat_body()).status_code == 200  # without streaming it answers


def test_upstream_invalid_json_is_service_unavailable(client, chat_route, raw_key, fake_upstream):
    fake_upstream.set(invalid_json=True)

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code in SERVICE_UNAVAILABLE
    assert error_of(response)["type"] == "service_unavailable_error"
    assert "<html>" not in response.content.decode()
    assert_safe_error(response, chat_route)


def test_upstream_200_holding_an_error_is_a_failure_not_a_billed_answer(client, chat_route, raw_key, fake_upstream):
    # Some OpenAI-compatible servers answer 200 with an error object and no choices.
    message = f"Model is overloaded (key {chat_route.credential})"
    fake_upstream.set(answer_body=json.dumps({"error": {"message": message, "type": "server_error"}}).encode())

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 502
    error = error_of(response)
    assert error["type"] == "service_unavailable_error"
    assert "Model is overloaded" in error["message"]
    assert "X-Request-Cost-Micro-Usd" not in response
    assert_safe_error(response, chat_route)
    [record] = UsageRecord.objects.all()
    assert (record.status_code, record.error_type, record.cost_micro_usd) == (502, "upstream_error_in_answer", 0)


def test_stream_error_event_from_the_upstream_is_relayed_in_openai_shape_without_the_credential(
    client, chat_route, raw_key, fake_upstream
):
    fake_upstream.set(error_event_after=3, error_message=f"Overloaded (key {chat_route.credential})")

    raw = _stream_body(post_chat(client, raw_key, chat_body(stream=True)))

    payloads = sse_payloads(raw)
    errors = [json.loads(p)["error"] for p in payloads if p != b"[DONE]" and "error" in json.loads(p)]
    assert len(errors) == 1
    assert errors[0]["type"] == "service_unavailable_error"
    assert "Overloaded" in errors[0]["message"]
    assert chat_route.credential.encode() not in raw
    assert payloads[-1] == b"[DONE]"
    [record] = UsageRecord.objects.all()
    assert (record.status_code, record.error_type) == (502, "upstream_stream_error")


def test_upstream_error_body_that_is_not_json_is_still_an_openai_error(client, chat_route, raw_key, fake_upstream):
    fake_upstream.fail_with(500)
    fake_upstream.set(error_body=b"<html><body>Internal Server Error</body></html>")

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code in SERVICE_UNAVAILABLE
    assert error_of(response)["type"] == "service_unavailable_error"
    assert "<html>" not in response.content.decode()


def test_model_without_an_enabled_route_is_service_unavailable(client, chat_route, raw_key, fake_upstream):
    from catalog.selectors import catalog_cache_clear

    chat_route.route.enabled = False
    chat_route.route.save()
    catalog_cache_clear()

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code in SERVICE_UNAVAILABLE
    assert error_of(response)["type"] == "service_unavailable_error"
    assert fake_upstream.requests == []


def test_sdk_raises_its_own_error_classes(openai_client, fake_upstream, chat_route):
    fake_upstream.fail_with(429)
    with pytest.raises(openai.RateLimitError):
        openai_client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])

    fake_upstream.fail_with(400, "Unsupported parameter: 'foo'.")
    with pytest.raises(openai.BadRequestError, match="Unsupported parameter"):
        openai_client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])

    fake_upstream.fail_with(500)
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])


# --- upstream failures in the middle of a stream --------------------------------------


def _stream_body(response) -> bytes:
    assert response.status_code == 200
    assert response.streaming
    return b"".join(response.streaming_content)


def test_stream_reset_by_upstream_ends_with_an_error_event(client, chat_route, raw_key, fake_upstream):
    fake_upstream.set(reset_after_events=3)  # role chunk and two words, then a TCP reset

    raw = _stream_body(post_chat(client, raw_key, chat_body(stream=True)))

    payloads = sse_payloads(raw)
    delivered = [c for c in sse_chunks(raw) if "choices" in c]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in delivered) == "".join(
        words(fake_upstream.behaviour.reply_text)[:2]
    )
    errors = [json.loads(p)["error"] for p in payloads if p != b"[DONE]" and "error" in json.loads(p)]
    assert len(errors) == 1
    assert errors[0]["type"] == "service_unavailable_error"
    assert payloads[-1] == b"[DONE]"
    assert b"Traceback" not in raw
    assert chat_route.credential.encode() not in raw
    [record] = UsageRecord.objects.all()
    assert record.status_code in SERVICE_UNAVAILABLE


def test_stream_stalled_upstream_times_out_with_an_error_event(client, chat_route, raw_key, fake_upstream):
    chat_route.update_upstream(read_timeout=0.3)
    fake_upstream.set(hold_after_events=2)  # never released: the upstream goes silent

    raw = _stream_body(post_chat(client, raw_key, chat_body(stream=True)))

    payloads = sse_payloads(raw)
    assert any(p != b"[DONE]" and "error" in json.loads(p) for p in payloads)
    assert payloads[-1] == b"[DONE]"
    [record] = UsageRecord.objects.all()
    assert record.status_code in SERVICE_UNAVAILABLE


def test_stream_closed_without_done_ends_with_an_error_event(client, chat_route, raw_key, fake_upstream):
    fake_upstream.set(omit_done=True)

    raw = _stream_body(post_chat(client, raw_key, chat_body(stream=True)))

    payloads = sse_payloads(raw)
    assert "error" in json.loads(payloads[-2])
    assert payloads[-1] == b"[DONE]"


def test_sdk_stream_broken_by_upstream_raises(openai_client, fake_upstream, chat_route):
    fake_upstream.set(reset_after_events=3)

    stream = openai_client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "".join(words(fake_upstream.behaviour.reply_text)[:2])


# --- the API's own errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v1/nope", "/api/v1/nope", "/v1/chat/completion", "/v1/chat/completions/extra", "/v1", "/api/v1", "/v1/"],
)
def test_unknown_api_path_is_404_in_openai_shape(client, db, path):
    response = client.post(path, data="{}", content_type="application/json")

    assert response.status_code == 404
    expected = "not_found_error" if path.startswith("/api/v1/") else "invalid_request_error"
    assert error_of(response)["type"] == expected
    assert response["X-Request-Id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/chat/completions"),
        ("put", "/v1/chat/completions"),
        ("delete", "/api/v1/chat/completions"),
        ("post", "/v1/models"),
        ("delete", "/v1/models/test-model"),
        ("post", "/v1/health"),
    ],
)
def test_wrong_method_is_405_in_openai_shape(client, chat_route, raw_key, method, path):
    response = getattr(client, method)(path, headers={"Authorization": f"Bearer {raw_key}"})

    assert response.status_code == 405
    assert error_of(response)["type"] == "invalid_request_error"
    assert response["X-Request-Id"]


def test_body_over_the_size_limit_is_413_in_openai_shape(client, chat_route, raw_key, fake_upstream):
    padding = "x" * (settings.MAX_REQUEST_BODY_BYTES + 1)
    body = chat_body(messages=[{"role": "user", "content": padding}])

    response = post_chat(client, raw_key, body)

    assert response.status_code == 413
    assert error_of(response)["type"] == "invalid_request_error"
    assert response["X-Request-Id"]
    assert fake_upstream.requests == []
    assert UsageRecord.objects.count() == 0


def test_client_request_id_is_kept(client, chat_route, raw_key, fake_upstream):
    response = post_chat(client, raw_key, chat_body(), headers={"X-Request-Id": "client-chosen-id-123"})

    assert response["X-Request-Id"] == "client-chosen-id-123"


def test_unusable_client_request_id_is_replaced(client, chat_route, raw_key, fake_upstream):
    response = post_chat(client, raw_key, chat_body(), headers={"X-Request-Id": "<script>alert(1)</script>"})

    assert response["X-Request-Id"]
    assert "<" not in response["X-Request-Id"]


def test_oversized_body_answer_still_carries_rate_limit_headers(client, chat_route, raw_key, fake_upstream):
    # The key was valid and the call was counted against its limit.
    padding = "x" * (settings.MAX_REQUEST_BODY_BYTES + 1)

    response = post_chat(client, raw_key, chat_body(messages=[{"role": "user", "content": padding}]))

    assert response.status_code == 413
    assert response.has_header("X-RateLimit-Remaining-Requests")


def test_unexpected_server_error_is_500_in_openai_shape(client, chat_route, raw_key, fake_upstream, monkeypatch):
    from gateway import pipeline

    def broken(**kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(pipeline, "route_pick", broken)

    response = post_chat(client, raw_key, chat_body())

    assert response.status_code == 500
    error = error_of(response)
    assert error["type"] == "internal_server_error"
    assert "secret internal detail" not in response.content.decode()
    assert_safe_error(response, chat_route)
    assert fake_upstream.requests == []


def test_failed_upstream_call_is_sent_once_and_the_next_call_works(client, chat_route, raw_key, fake_upstream):
    fake_upstream.fail_with(500, times=1)

    failed = post_chat(client, raw_key, chat_body())
    after = post_chat(client, raw_key, chat_body())

    assert failed.status_code in SERVICE_UNAVAILABLE
    assert after.status_code == 200
    # One upstream request per client request: no hidden retry that could answer or bill twice.
    assert len(fake_upstream.chat_requests) == 2


@pytest.mark.parametrize("category", ["image", "embedding", "audio-tts"])
def test_a_model_that_is_not_for_chat_is_refused_before_any_upstream_call(
    client, chat_route, raw_key, fake_upstream, category
):
    chat_route.model.category = category
    chat_route.model.save()
    catalog_cache_clear()
    response = post_chat(client, raw_key, chat_body())
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("model_not_supported", "model")
    assert category in error["message"]
    assert not fake_upstream.requests


def test_an_https_upstream_is_checked_against_the_ca_bundle_requests_uses():
    import requests

    from gateway.providers.http import _pool_and_target, session_for

    session = session_for(upstream_id=987_654, base_url="https://api.example.com/v1")
    pool, target = _pool_and_target(session, "https://api.example.com/v1/chat/completions?x=1")

    assert target == "/v1/chat/completions?x=1"
    assert pool.cert_reqs == "CERT_REQUIRED"
    assert pool.ca_certs == requests.certs.where()
