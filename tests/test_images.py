"""POST /v1/images/generations and /edits, GET /v1/images/tasks/{id}: through the real openai SDK,
against the fake media upstream (OpenAI images, Replicate-style predictions) and a real Celery worker."""

from __future__ import annotations

import base64
import io
import time

import openai
import pytest
import requests

from billing.models import Balance, LedgerEntry, Reservation, UsageRecord
from gateway.media.options import ASPECT_LABELS
from gateway.models import MediaTask
from tests.fake_media import png_bytes
from tests.fixtures_gateway import chat_body, in_one_window, post_chat
from tests.fixtures_media_tasks import ASPECT_SIZES, GPT_IMAGE_SIZES, IMAGE_PRICE

PATH = "/v1/images/generations"


def _client(live_api, raw_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, max_retries=0, timeout=30)


def _post(client, raw_key, body, **headers):
    return client.post(PATH, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw_key}", **headers)


def _balance(user_id) -> int:
    return Balance.objects.get(user_id=user_id).balance_micro_usd


@pytest.fixture
def gpt_image(media_route):
    return media_route(
        "img-gpt",
        upstream_model="gpt-image-1",
        media_options={
            "sizes": GPT_IMAGE_SIZES,
            "max_n": 4,
            "qualities": ["low", "medium", "high", "auto"],
            "edits": True,
        },
        per_image_by_option={"high": 3 * IMAGE_PRICE},
    )


@pytest.fixture
def dalle(media_route):
    return media_route("img-dalle", upstream_model="dall-e-3", media_options={"sizes": ["1024x1024", "1792x1024"]})


@pytest.fixture
def flux(media_route):
    return media_route(
        "img-flux",
        kind="predictions",
        upstream_model="acme/flux",
        media_options={"sizes": ASPECT_SIZES, "max_n": 4},
    )


# --- at once: OpenAI images -------------------------------------------------------------------


def test_sdk_generates_an_image_served_from_belugas_own_signed_url(live_api, gpt_image, api_key, fake_media):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    with _client(live_api, raw_key) as client:
        result = client.images.with_raw_response.generate(model="img-gpt", prompt="A beluga", size="16:9", n=2)
    images = result.parse()

    assert len(images.data) == 2
    for item in images.data:
        assert item.url.startswith(live_api + "/v1/media/")
        assert fake_media.base_url not in item.url
        fetched = requests.get(item.url, timeout=10)
        assert fetched.status_code == 200
        assert fetched.headers["Content-Type"] == "image/png"
        assert fetched.content == png_bytes()
    sent = fake_media.requests_to("/v1/images/generations")[-1]
    assert sent.json["model"] == "gpt-image-1"
    assert sent.json["size"] == "1536x1024"  # 16:9 → the model's nearest landscape size
    assert sent.json["n"] == 2
    assert "response_format" not in sent.json
    assert sent.headers["authorization"] == f"Bearer {gpt_image.upstream.api_key}"
    assert raw_key not in str(sent.headers)
    assert result.headers["X-Request-Cost-Micro-Usd"] == str(2 * IMAGE_PRICE)

    record = UsageRecord.objects.get(request_id=result.headers["X-Request-Id"])
    assert (record.media_unit, record.media_units, record.media_unit_price) == ("image", 2, IMAGE_PRICE)
    assert record.cost_micro_usd == 2 * IMAGE_PRICE
    assert record.endpoint == "images/generations"
    assert _balance(key_row.user_id) == before - 2 * IMAGE_PRICE
    assert Reservation.objects.get(request_id=record.request_id).state == Reservation.State.SETTLED
    task = MediaTask.objects.get(request_id=record.request_id)
    assert (task.status, task.billed, task.cost_micro_usd, len(task.results)) == ("completed", True, 2 * IMAGE_PRICE, 2)


def test_generation_api_shows_the_media_charge(client, gpt_image, raw_key):
    response = _post(client, raw_key, {"model": "img-gpt", "prompt": "x", "n": 3, "quality": "high"})
    request_id = response["X-Request-Id"]

    data = client.get(f"/v1/generation?id={request_id}", HTTP_AUTHORIZATION=f"Bearer {raw_key}").json()["data"]

    assert data["media"] == {"unit": "image", "units": 3, "unit_price": 3 * IMAGE_PRICE}
    assert data["cost_micro_usd"] == 9 * IMAGE_PRICE


@pytest.mark.parametrize("quality", [None, "auto"])
def test_a_quality_left_to_the_model_is_held_dear_and_charged_as_made(client, gpt_image, api_key, fake_media, quality):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    body = {"model": "img-gpt", "prompt": "x", "n": 2} | ({"quality": quality} if quality else {})

    response = _post(client, raw_key, body)

    assert response.status_code == 200, response.content
    # Held at the dearest quality ("high", 3x); the answer says it was made at "medium" (the base price).
    hold = Reservation.objects.get(request_id=response["X-Request-Id"])
    assert hold.amount_micro_usd == 2 * 3 * IMAGE_PRICE
    assert response["X-Request-Cost-Micro-Usd"] == str(2 * IMAGE_PRICE)
    assert _balance(key_row.user_id) == before - 2 * IMAGE_PRICE


def test_b64_json_works_for_an_upstream_that_returns_urls(live_api, dalle, api_key, fake_media):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        images = client.images.generate(model="img-dalle", prompt="x", response_format="b64_json")

    [item] = images.data
    assert base64.b64decode(item.b64_json) == png_bytes()
    assert item.url is None
    # DALL-E answered with a URL on the fake, which Beluga fetched and stored.
    assert fake_media.get_count("/files/") == 1


def test_every_aspect_label_becomes_the_nearest_size_the_model_takes(live_api, gpt_image, api_key, fake_media):
    _, raw_key = api_key
    expected = {}
    for label in ASPECT_LABELS:
        width, _, height = label.partition(":")
        if label == "auto":
            expected[label] = "auto"
        elif int(width) > int(height):
            expected[label] = "1536x1024"
        elif int(width) < int(height):
            expected[label] = "1024x1536"
        else:
            expected[label] = "1024x1024"

    with _client(live_api, raw_key) as client:
        for label in ASPECT_LABELS:
            assert (
                len(client.images.generate(model="img-gpt", prompt="x", size=label).data) == 1
            )  # the SDK passes any string

    sent = [request.json["size"] for request in fake_media.requests_to("/v1/images/generations")]
    assert dict(zip(ASPECT_LABELS, sent, strict=True)) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [("1920x1080", "16:9"), ("1024x1024", "1:1"), ("768x1024", "3:4"), ("2560x1080", "21:9"), ("1080x1920", "9:16")],
)
def test_pixel_sizes_become_the_nearest_aspect_label(media_worker, live_api, flux, api_key, fake_media, size, expected):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        client.images.generate(model="img-flux", prompt="x", size=size)

    [submit] = fake_media.requests_to("/v1/models/acme/flux/predictions", "POST")
    assert submit.json["input"]["aspect_ratio"] == expected


def test_price_by_quality_is_charged(client, gpt_image, api_key):
    key_row, raw_key = api_key
    response = _post(client, raw_key, {"model": "img-gpt", "prompt": "x", "quality": "high"})

    assert response.status_code == 200, response.content
    assert response["X-Request-Cost-Micro-Usd"] == str(3 * IMAGE_PRICE)


@pytest.mark.parametrize(
    ("body", "param", "listed"),
    [
        ({"prompt": "x"}, "model", None),
        ({"model": "img-gpt"}, "prompt", None),
        ({"model": "img-gpt", "prompt": "x" * 4001}, "prompt", None),
        ({"model": "img-gpt", "prompt": "x", "n": 5}, "n", None),
        ({"model": "img-gpt", "prompt": "x", "n": 0}, "n", None),
        ({"model": "img-gpt", "prompt": "x", "size": "7:3"}, "size", "1024x1024"),
        ({"model": "img-gpt", "prompt": "x", "size": "huge"}, "size", "1536x1024"),
        ({"model": "img-gpt", "prompt": "x", "quality": "ultra"}, "quality", "low, medium, high, auto"),
        ({"model": "img-gpt", "prompt": "x", "style": "vivid"}, "style", None),
        ({"model": "img-gpt", "prompt": "x", "response_format": "gif"}, "response_format", "b64_json"),
    ],
)
def test_invalid_parameters_are_400_naming_the_param(live_api, gpt_image, api_key, fake_media, body, param, listed):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client, pytest.raises(openai.BadRequestError) as refused:
        client.post("/images/generations", body=body, cast_to=object)

    error = refused.value.body
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    if listed:
        assert listed in error["message"]
    assert refused.value.response.headers["X-Request-Id"]
    assert fake_media.get_count("/v1/images") == 0
    assert not MediaTask.objects.exists()


def test_a_chat_model_is_not_an_image_model(client, chat_route, raw_key):
    response = _post(client, raw_key, {"model": "test-model", "prompt": "x"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_supported"


def test_upstream_refusal_is_a_400_and_costs_nothing(client, gpt_image, api_key, fake_media):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    fake_media.fail_next("/v1/images", status=400, body={"error": {"message": "Prompt refused by safety system."}})

    response = _post(client, raw_key, {"model": "img-gpt", "prompt": "x"})

    assert response.status_code == 400
    assert "safety" in response.json()["error"]["message"]
    assert _balance(key_row.user_id) == before
    record = UsageRecord.objects.get(request_id=response["X-Request-Id"])
    assert (record.status_code, record.cost_micro_usd) == (400, 0)
    assert MediaTask.objects.get().status == "failed"
    assert not Reservation.objects.filter(state=Reservation.State.OPEN).exists()


def test_image_calls_use_the_image_bucket(
    client, gpt_image, chat_route, fake_upstream, api_key_factory, user_factory, plan_factory
):
    plan_factory("pro", chat_rpm=1, image_rpm=1)
    _, raw_key = api_key_factory(user=user_factory(plan="pro", password=None))

    def chat():
        return post_chat(client, raw_key, chat_body())

    allowed, limited, chat_after, chat_over, image_after = in_one_window(
        lambda: [
            _post(client, raw_key, {"model": "img-gpt", "prompt": "x"}),
            _post(client, raw_key, {"model": "img-gpt", "prompt": "x"}),
            chat(),  # the image bucket is spent, the chat bucket is not
            chat(),
            _post(client, raw_key, {"model": "img-gpt", "prompt": "x"}),
        ]
    )

    assert allowed.status_code == 200
    assert limited.status_code == 429
    assert "image requests" in limited.json()["error"]["message"]
    assert limited["Retry-After"]
    assert (chat_after.status_code, chat_after["X-RateLimit-Remaining-Requests"]) == (200, "0")
    assert chat_over.status_code == 429
    assert "chat requests" in chat_over.json()["error"]["message"]
    assert (image_after.status_code, image_after["X-RateLimit-Limit-Requests"]) == (429, "1")


def test_edits_send_the_image_and_mask_as_multipart(live_api, gpt_image, api_key, fake_media):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        result = client.images.edit(
            model="img-gpt",
            image=("in.png", io.BytesIO(png_bytes((1, 2, 3))), "image/png"),
            mask=("mask.png", io.BytesIO(png_bytes((0, 0, 0))), "image/png"),
            prompt="Add a hat",
        )

    assert requests.get(result.data[0].url, timeout=10).content == png_bytes()
    [sent] = fake_media.requests_to("/v1/images/edits")
    assert sent.form["prompt"] == "Add a hat"
    assert sent.form["model"] == "gpt-image-1"
    assert {f.field: f.data for f in sent.files} == {"image": png_bytes((1, 2, 3)), "mask": png_bytes((0, 0, 0))}


def test_edits_refuse_a_file_that_is_not_an_image(client, gpt_image, raw_key, fake_media):
    response = client.post(
        "/v1/images/edits",
        {"model": "img-gpt", "prompt": "x", "image": io.BytesIO(b"<html>not an image</html>")},
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "image"
    assert fake_media.get_count("/v1/images") == 0


def test_gemini_image_models_answer_inline_images(client, media_route, api_key, fake_media):
    media_route("img-gemini", kind="gemini", upstream_model="gemini-2.5-flash-image", media_options={"max_n": 2})
    key_row, raw_key = api_key

    response = _post(client, raw_key, {"model": "img-gemini", "prompt": "A whale", "size": "1920x1080", "n": 2})

    assert response.status_code == 200, response.content
    assert len(response.json()["data"]) == 2
    calls = fake_media.requests_to("/v1beta/models/gemini-2.5-flash-image:generateContent")
    assert len(calls) == 2
    assert calls[0].json["generationConfig"] == {
        "responseModalities": ["IMAGE"],
        "imageConfig": {"aspectRatio": "16:9"},
    }
    assert calls[0].json["contents"][0]["parts"] == [{"text": "A whale"}]
    assert calls[0].headers["x-goog-api-key"]
    assert response["X-Request-Cost-Micro-Usd"] == str(2 * IMAGE_PRICE)


# --- jobs: prediction upstreams, polled by a Celery worker --------------------------------------


def test_transparent_async_answers_urls_after_polling(media_worker, live_api, flux, api_key, fake_media):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    fake_media.prediction_polls_to_complete = 3

    with _client(live_api, raw_key) as client:
        images = client.images.generate(model="img-flux", prompt="A whale", size="21:9", n=2)

    assert [requests.get(item.url, timeout=10).content for item in images.data] == [png_bytes()] * 2
    [submit] = fake_media.requests_to("/v1/models/acme/flux/predictions", "POST")
    assert submit.json["input"] == {"prompt": "A whale", "aspect_ratio": "21:9", "num_outputs": 2}
    assert fake_media.get_count("/v1/predictions/", "GET") >= 3
    assert _balance(key_row.user_id) == before - 2 * IMAGE_PRICE
    assert UsageRecord.objects.get().cost_micro_usd == 2 * IMAGE_PRICE
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.SETTLE).count() == 1


def test_async_true_answers_202_then_the_task_completes(media_worker, client, flux, raw_key, fake_media):
    response = _post(client, raw_key, {"model": "img-flux", "prompt": "x", "async": True})

    assert response.status_code == 202, response.content
    task = response.json()
    assert task["status"] in ("queued", "in_progress")
    assert task["id"].startswith("imgtask_")
    body = _poll_task(client, raw_key, task["id"])
    assert body["status"] == "completed"
    assert body["cost_micro_usd"] == IMAGE_PRICE
    url = body["data"][0]["url"]
    assert "/v1/media/" in url
    assert client.get(url[url.index("/v1/media/") :]).getvalue() == png_bytes()


def test_prefer_respond_async_header(media_worker, client, flux, raw_key):
    response = _post(client, raw_key, {"model": "img-flux", "prompt": "x"}, HTTP_PREFER="respond-async")

    assert response.status_code == 202
    assert _poll_task(client, raw_key, response.json()["id"])["status"] == "completed"


def test_past_the_wait_the_answer_is_504_with_the_task_id(
    media_worker, client, live_api, flux, api_key, fake_media, settings
):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    settings.BELUGA = {**settings.BELUGA, "IMAGE_WAIT_SECONDS": 1}
    fake_media.script_prediction("never")

    # The SDK's default retries (2) stay on: the 504 tells it not to start the job again.
    with openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, timeout=30) as sdk:
        with pytest.raises(openai.InternalServerError) as pending_error:
            sdk.images.generate(model="img-flux", prompt="x")

    assert pending_error.value.status_code == 504
    assert MediaTask.objects.count() == 1  # not retried
    assert fake_media.get_count("/v1/models/acme/flux/predictions", "POST") == 1
    error = pending_error.value.body
    assert error["code"] == "generation_pending"
    task_id = error["task_id"]
    assert task_id in error["message"]
    assert pending_error.value.response.headers["X-Beluga-Task-Id"] == task_id
    pending = client.get(f"/v1/images/tasks/{task_id}", HTTP_AUTHORIZATION=f"Bearer {raw_key}").json()
    assert pending["status"] in ("queued", "in_progress")
    assert _balance(key_row.user_id) == before  # held, not charged

    fake_media.script_prediction("succeed", prediction_id=MediaTask.objects.get().upstream_job_id)
    body = _poll_task(client, raw_key, task_id)
    assert body["status"] == "completed"
    assert _balance(key_row.user_id) == before - IMAGE_PRICE


def test_a_failed_job_is_an_error_and_costs_nothing(media_worker, client, flux, api_key, fake_media):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    fake_media.script_prediction("fail", error="NSFW content detected")

    response = _post(client, raw_key, {"model": "img-flux", "prompt": "x"})

    assert response.status_code == 502, response.content
    assert "NSFW" in response.json()["error"]["message"]
    assert _balance(key_row.user_id) == before
    assert not Reservation.objects.filter(state=Reservation.State.OPEN).exists()
    record = UsageRecord.objects.get()
    assert (record.cost_micro_usd, record.finish_reason) == (0, "failed")


def test_a_result_that_is_not_an_image_fails_the_task(media_worker, client, flux, api_key, fake_media):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    fake_media.script_prediction("bad_output")

    response = _post(client, raw_key, {"model": "img-flux", "prompt": "x"})

    assert response.status_code == 502
    assert "not a image" in response.json()["error"]["message"] or "not an image" in response.json()["error"]["message"]
    assert _balance(key_row.user_id) == before


def test_another_accounts_task_is_not_found(media_worker, client, flux, raw_key, api_key_factory):
    task_id = _post(client, raw_key, {"model": "img-flux", "prompt": "x", "async": True}).json()["id"]
    _, other_key = api_key_factory()

    response = client.get(f"/v1/images/tasks/{task_id}", HTTP_AUTHORIZATION=f"Bearer {other_key}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"
    _poll_task(client, raw_key, task_id)  # let the worker finish before the test's database goes


def _poll_task(client, raw_key, task_id, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/images/tasks/{task_id}", HTTP_AUTHORIZATION=f"Bearer {raw_key}").json()
        if body["status"] not in ("queued", "in_progress") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_a_request_making_its_images_is_left_to_it(live_api, gpt_image, api_key, fake_media):
    """The periodic resume must not hand a task the request is making itself to a worker."""
    import threading

    from gateway.media.jobs import media_tasks_resume

    _, raw_key = api_key
    fake_media.image_delay = 1.0
    result = {}

    def call():
        with _client(live_api, raw_key) as client:
            result["images"] = client.images.generate(model="img-gpt", prompt="slow")

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 10
    while not MediaTask.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.02)

    assert media_tasks_resume(grace_seconds=0) == 0
    thread.join(20)
    assert len(result["images"].data) == 1
    assert MediaTask.objects.get().status == "completed"


def test_a_job_past_its_deadline_fails_and_is_cancelled_upstream(
    media_worker, client, flux, api_key, fake_media, settings
):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    settings.BELUGA = {**settings.BELUGA, "IMAGE_JOB_DEADLINE_SECONDS": 1}
    fake_media.script_prediction("never")

    task_id = _post(client, raw_key, {"model": "img-flux", "prompt": "x", "async": True}).json()["id"]
    body = _poll_task(client, raw_key, task_id)

    assert body["status"] == "failed"
    assert body["error"]["code"] == "deadline_exceeded"
    assert fake_media.get_count("/v1/predictions/", "POST") == 1  # the cancel
    assert fake_media.predictions[MediaTask.objects.get().upstream_job_id].status == "canceled"
    assert _balance(key_row.user_id) == before
    assert not Reservation.objects.filter(state=Reservation.State.OPEN).exists()


def test_a_poll_that_fails_is_tried_again(media_worker, client, flux, api_key, fake_media):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    fake_media.prediction_polls_to_complete = 3
    fake_media.fail_next("/v1/predictions/", status=503, times=2)

    response = _post(client, raw_key, {"model": "img-flux", "prompt": "x"})

    assert response.status_code == 200, response.content
    assert _balance(key_row.user_id) == before - IMAGE_PRICE
    assert UsageRecord.objects.count() == 1


def test_a_504_is_replayed_for_its_idempotency_key(media_worker, client, flux, raw_key, fake_media, settings):
    settings.BELUGA = {**settings.BELUGA, "IMAGE_WAIT_SECONDS": 0.3}
    fake_media.script_prediction("never")
    body = {"model": "img-flux", "prompt": "x"}

    first = _post(client, raw_key, body, HTTP_IDEMPOTENCY_KEY="img-1")
    again = _post(client, raw_key, body, HTTP_IDEMPOTENCY_KEY="img-1")

    assert (first.status_code, again.status_code) == (504, 504)
    assert again["X-Beluga-Task-Id"] == first["X-Beluga-Task-Id"]
    assert again["Idempotent-Replayed"] == "true"
    assert MediaTask.objects.count() == 1
