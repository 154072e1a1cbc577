"""The README's first calls: the demo model, served by the local simulator, answers every client protocol."""

from __future__ import annotations

import json
import threading

import pytest

from gateway.simulator import make_server

pytest_plugins = ["tests.fixtures_gateway"]


@pytest.fixture(scope="module")
def simulator_url():
    server = make_server("127.0.0.1", 0, word_delay_ms=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def demo(db, simulator_url):
    """The seeded beluga-demo model, its upstream pointed at this test's simulator."""
    from catalog.models import Upstream
    from catalog.selectors import catalog_cache_clear

    Upstream.objects.filter(name="local-simulator").update(base_url=simulator_url)
    catalog_cache_clear()
    return "beluga-demo"


def test_anthropic_messages_to_the_demo_model(client, raw_key, demo):
    body = {"model": demo, "max_tokens": 256, "messages": [{"role": "user", "content": "Hello!"}]}
    response = client.post(
        "/v1/messages", json.dumps(body), content_type="application/json", headers={"x-api-key": raw_key}
    )
    assert response.status_code == 200, response.content
    answer = json.loads(response.content)
    assert answer["type"] == "message" and answer["content"][0]["text"]
    assert answer["usage"]["input_tokens"] > 0


def test_gemini_generate_content_to_the_demo_model(client, raw_key, demo):
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]}
    response = client.post(
        f"/v1beta/models/{demo}:generateContent",
        json.dumps(body),
        content_type="application/json",
        headers={"x-goog-api-key": raw_key},
    )
    assert response.status_code == 200, response.content
    answer = json.loads(response.content)
    assert answer["candidates"][0]["content"]["parts"][0]["text"]
    assert answer["candidates"][0]["finishReason"] == "STOP"


def test_responses_to_the_demo_model(client, raw_key, demo):
    body = {"model": demo, "input": "Hello!"}
    response = client.post(
        "/v1/responses",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw_key}"},
    )
    assert response.status_code == 200, response.content
    answer = json.loads(response.content)
    assert answer["status"] == "completed" and answer["output"][-1]["content"][0]["text"]


def test_the_demo_image_model_makes_an_image(client, raw_key, demo):
    body = {"model": "beluga-demo-image", "prompt": "A beluga", "size": "16:9", "n": 2}
    response = client.post(
        "/v1/images/generations",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )

    assert response.status_code == 200, response.content
    first, second = json.loads(response.content)["data"]
    image = client.get(first["url"][first["url"].index("/v1/media/") :])
    assert image["Content-Type"] == "image/png"
    png = b"".join(image.streaming_content)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png[16:24] == b"\x00\x00\x00\x40\x00\x00\x00\x40"  # IHDR: 64 × 64
    assert first["url"] != second["url"]
    assert response["X-Request-Cost-Micro-Usd"] == "2000"
