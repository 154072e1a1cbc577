"""Videos as a task API: POST /v1/videos (OpenAI's shape, the real openai SDK) and POST /v1/videos/generations
(spec 000), polled by a real Celery worker against the fake OpenAI videos and prediction upstreams."""

from __future__ import annotations

import io
import time

import openai
import pytest
import requests

from billing.models import Balance, LedgerEntry, Reservation, UsageRecord
from gateway.models import MediaTask
from tests.fake_media import mp4_bytes, png_bytes
from tests.fixtures_media_tasks import VIDEO_SECOND_PRICE


@pytest.fixture
def sora(media_route):
    return media_route(
        "vid-sora",
        category="video",
        upstream_model="sora-2",
        media_options={"durations": [4, 8, 12], "sizes": ["720x1280", "1280x720"], "image_input": True},
    )


@pytest.fixture
def kling(media_route):
    return media_route(
        "vid-kling",
        kind="predictions",
        category="video",
        upstream_model="acme/kling-video",
        media_options={
            "durations": [5, 10],
            "sizes": ["16:9", "9:16", "1:1"],
            "image_input": True,
            "input_names": {"seconds": "duration", "image": "start_image"},
        },
    )


def _client(live_api, raw_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, max_retries=0, timeout=30)


def _auth(raw_key) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


def _balance(user_id) -> tuple[int, int]:
    row = Balance.objects.get(user_id=user_id)
    return row.balance_micro_usd, row.reserved_micro_usd


def _until_done(read, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        body = read()
        status = body["status"] if isinstance(body, dict) else body.status
        if status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_openai_sdk_creates_polls_and_downloads_a_video(media_worker, live_api, sora, api_key, fake_media):
    key_row, raw_key = api_key
    balance_before, _ = _balance(key_row.user_id)
    with _client(live_api, raw_key) as client:
        video = client.videos.create(model="vid-sora", prompt="A beluga at dawn", seconds="8", size="720x1280")
        assert video.id.startswith("video_")
        assert video.status in ("queued", "in_progress")
        # Held at submit, not charged yet.
        assert _balance(key_row.user_id) == (balance_before, 8 * VIDEO_SECOND_PRICE)

        done = _until_done(lambda: client.videos.retrieve(video.id))
        assert done.status == "completed"
        assert done.progress == 100
        content = client.videos.download_content(video.id)

    assert content.read() == mp4_bytes()
    [create] = fake_media.requests_to("/v1/videos", "POST")
    assert (create.params["model"], create.params["seconds"], create.params["size"]) == ("sora-2", "8", "720x1280")
    assert create.headers["authorization"] == f"Bearer {sora.upstream.api_key}"
    assert fake_media.get_count("/v1/videos/", "GET") >= 3
    assert _balance(key_row.user_id) == (balance_before - 8 * VIDEO_SECOND_PRICE, 0)
    record = UsageRecord.objects.get()
    assert (record.media_unit, record.media_units, record.cost_micro_usd) == (
        "video_second",
        8,
        8 * VIDEO_SECOND_PRICE,
    )
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.SETTLE).count() == 1


def test_spec_paths_submit_and_poll_a_prediction_video(media_worker, client, kling, api_key, fake_media):
    key_row, raw_key = api_key
    response = client.post(
        "/v1/videos/generations",
        {
            "model": "vid-kling",
            "prompt": "Waves",
            "duration": 10,
            "aspect_ratio": "9:16",
            "image": "data:image/png;base64," + __import__("base64").b64encode(png_bytes()).decode(),
        },
        content_type="application/json",
        **_auth(raw_key),
    )
    assert response.status_code == 200, response.content
    task_id = response.json()["task_id"]

    done = _until_done(lambda: client.get(f"/v1/videos/tasks/{task_id}", **_auth(raw_key)).json())

    assert done["status"] == "completed"
    url = done["url"]
    assert client.get(url[url.index("/v1/media/") :]).getvalue() == mp4_bytes()
    [submit] = fake_media.requests_to("/v1/models/acme/kling-video/predictions", "POST")
    inputs = submit.json["input"]
    assert (inputs["prompt"], inputs["duration"], inputs["aspect_ratio"]) == ("Waves", 10, "9:16")
    assert inputs["start_image"].startswith("data:image/png;base64,")
    assert UsageRecord.objects.get().cost_micro_usd == 10 * VIDEO_SECOND_PRICE
    # The same task under OpenAI's path.
    assert client.get(f"/v1/videos/{task_id}", **_auth(raw_key)).json()["status"] == "completed"


def test_input_reference_upload_reaches_openai(media_worker, live_api, sora, api_key, fake_media):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        video = client.videos.create(
            model="vid-sora", prompt="x", input_reference=("first.png", io.BytesIO(png_bytes()), "image/png")
        )
        _until_done(lambda: client.videos.retrieve(video.id))

    [create] = fake_media.requests_to("/v1/videos", "POST")
    assert [(f.field, f.data) for f in create.files] == [("input_reference", png_bytes())]


def test_a_failed_video_costs_nothing(media_worker, client, sora, api_key, fake_media):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    fake_media.script_video("fail", message="Blocked by moderation.")
    body = {"model": "vid-sora", "prompt": "x", "seconds": "4"}
    task_id = client.post("/v1/videos", body, content_type="application/json", **_auth(raw_key)).json()["id"]

    done = _until_done(lambda: client.get(f"/v1/videos/{task_id}", **_auth(raw_key)).json())

    assert done["status"] == "failed"
    assert done["error"] == {"code": "moderation_blocked", "message": "Blocked by moderation."}
    assert _balance(key_row.user_id) == before
    assert Reservation.objects.get().state == Reservation.State.RELEASED
    assert UsageRecord.objects.get().cost_micro_usd == 0
    content = client.get(f"/v1/videos/{task_id}/content", **_auth(raw_key))
    assert content.status_code == 404


def test_deleting_a_running_video_cancels_it_and_releases_the_hold(media_worker, client, sora, api_key, fake_media):
    key_row, raw_key = api_key
    before = _balance(key_row.user_id)
    fake_media.script_video("never")
    body = {"model": "vid-sora", "prompt": "x"}
    task_id = client.post("/v1/videos", body, content_type="application/json", **_auth(raw_key)).json()["id"]
    deadline = time.monotonic() + 10
    while not MediaTask.objects.get().upstream_job_id and time.monotonic() < deadline:
        time.sleep(0.05)

    deleted = client.delete(f"/v1/videos/{task_id}", **_auth(raw_key))

    assert deleted.json() == {"id": task_id, "object": "video.deleted", "deleted": True}
    assert fake_media.get_count("/v1/videos/", "DELETE") == 1
    assert _balance(key_row.user_id) == before
    assert MediaTask.objects.get().status == "cancelled"
    assert client.get(f"/v1/videos/{task_id}", **_auth(raw_key)).status_code == 404


def test_another_accounts_video_is_not_found(media_worker, client, sora, raw_key, api_key_factory):
    body = {"model": "vid-sora", "prompt": "x"}
    task_id = client.post("/v1/videos", body, content_type="application/json", **_auth(raw_key)).json()["id"]
    _, other = api_key_factory()

    for path in (f"/v1/videos/{task_id}", f"/v1/videos/tasks/{task_id}", f"/v1/videos/{task_id}/content"):
        response = client.get(path, **_auth(other))
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "task_not_found"
    assert client.delete(f"/v1/videos/{task_id}", **_auth(other)).status_code == 404
    _until_done(lambda: client.get(f"/v1/videos/{task_id}", **_auth(raw_key)).json())


def test_list_is_the_accounts_videos_newest_first(media_worker, live_api, sora, api_key, api_key_factory):
    _, raw_key = api_key
    _, other = api_key_factory()
    with _client(live_api, raw_key) as client, _client(live_api, other) as other_client:
        mine = [client.videos.create(model="vid-sora", prompt=f"v{i}").id for i in range(3)]
        other_client.videos.create(model="vid-sora", prompt="not mine")
        page = client.videos.list(limit=2)
        assert [v.id for v in page.data] == [mine[2], mine[1]]
        assert page.has_more
        assert [v.id for v in client.videos.list(limit=2, after=mine[1]).data] == [mine[0]]
        for video_id in mine:
            _until_done(lambda video_id=video_id: client.videos.retrieve(video_id))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "vid-sora"}, "prompt"),
        ({"model": "vid-sora", "prompt": "x", "seconds": "7"}, "seconds"),
        ({"model": "vid-sora", "prompt": "x", "size": "wide"}, "size"),
        ({"model": "vid-sora", "prompt": "x", "image": "ftp://example.com/x.png"}, "image"),
        ({"prompt": "x"}, "model"),
    ],
)
def test_invalid_video_requests_are_400(client, sora, raw_key, fake_media, body, param):
    response = client.post("/v1/videos", body, content_type="application/json", **_auth(raw_key))

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not MediaTask.objects.exists()


def test_not_enough_balance_is_402_before_anything_is_submitted(client, sora, api_key_factory, user_factory):
    _, raw_key = api_key_factory(user=user_factory(plan="pro", password=None, credit_micro_usd=100_000))
    body = {"model": "vid-sora", "prompt": "x", "seconds": "12"}

    response = client.post("/v1/videos", body, content_type="application/json", **_auth(raw_key))

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert not MediaTask.objects.exists()


def test_the_video_url_is_belugas_and_expires(media_worker, live_api, sora, api_key, fake_media, settings):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        video = client.videos.create(model="vid-sora", prompt="x")
        _until_done(lambda: client.videos.retrieve(video.id))
    url = requests.get(
        f"{live_api}/v1/videos/{video.id}", headers={"Authorization": f"Bearer {raw_key}"}, timeout=10
    ).json()["url"]

    assert url.startswith(live_api + "/v1/media/")
    assert requests.get(url, timeout=10).content == mp4_bytes()
    settings.BELUGA = {**settings.BELUGA, "MEDIA_URL_TTL_SECONDS": -1}
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 404
    assert expired.json()["error"]["code"] == "media_link_expired"


def test_input_reference_as_an_image_url_object(media_worker, client, sora, raw_key, fake_media):
    data_url = "data:image/png;base64," + __import__("base64").b64encode(png_bytes()).decode()
    body = {"model": "vid-sora", "prompt": "x", "input_reference": {"image_url": data_url}}

    task_id = client.post("/v1/videos", body, content_type="application/json", **_auth(raw_key)).json()["id"]
    _until_done(lambda: client.get(f"/v1/videos/{task_id}", **_auth(raw_key)).json())

    [create] = fake_media.requests_to("/v1/videos", "POST")
    assert [(f.field, f.data) for f in create.files] == [("input_reference", png_bytes())]


def test_input_reference_by_file_id_is_refused(client, sora, raw_key):
    body = {"model": "vid-sora", "prompt": "x", "input_reference": {"file_id": "file_123"}}

    response = client.post("/v1/videos", body, content_type="application/json", **_auth(raw_key))

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input_reference"


def test_deleted_videos_leave_the_list_and_has_more_stays_right(media_worker, client, sora, raw_key):
    ids = []
    for i in range(3):
        body = {"model": "vid-sora", "prompt": f"v{i}"}
        ids.append(client.post("/v1/videos", body, content_type="application/json", **_auth(raw_key)).json()["id"])
    for video_id in ids:
        _until_done(lambda video_id=video_id: client.get(f"/v1/videos/{video_id}", **_auth(raw_key)).json())
    assert client.delete(f"/v1/videos/{ids[1]}", **_auth(raw_key)).json()["deleted"] is True

    page = client.get("/v1/videos?limit=1", **_auth(raw_key)).json()
    assert [v["id"] for v in page["data"]] == [ids[2]]
    assert page["has_more"] is True
    rest = client.get(f"/v1/videos?limit=5&after={ids[2]}", **_auth(raw_key)).json()
    assert [v["id"] for v in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False
    # The deleted one's charge stands: it was made.
    assert MediaTask.objects.get(public_id=ids[1]).cost_micro_usd == 4 * VIDEO_SECOND_PRICE


def test_the_video_object_has_openais_fields(media_worker, live_api, sora, api_key):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        video = client.videos.create(model="vid-sora", prompt="A beluga", seconds="4")
        assert video.prompt == "A beluga"
        assert video.remixed_from_video_id is None
        _until_done(lambda: client.videos.retrieve(video.id))
        with pytest.raises(openai.BadRequestError):
            client.videos.download_content(video.id, variant="thumbnail")


def test_files_past_the_retention_period_are_deleted(media_worker, client, sora, raw_key, settings):
    from datetime import timedelta

    from django.utils import timezone

    from gateway.media.jobs import media_files_purge
    from gateway.media.storage import media_open

    body = {"model": "vid-sora", "prompt": "x"}
    task_id = client.post("/v1/videos", body, content_type="application/json", **_auth(raw_key)).json()["id"]
    _until_done(lambda: client.get(f"/v1/videos/{task_id}", **_auth(raw_key)).json())
    task = MediaTask.objects.get(public_id=task_id)
    [stored] = task.results

    assert media_files_purge() == 0  # retention 0: kept
    settings.BELUGA = {**settings.BELUGA, "MEDIA_RETENTION_DAYS": 7}
    assert media_files_purge(now=timezone.now() + timedelta(days=6)) == 0
    assert media_files_purge(now=timezone.now() + timedelta(days=8)) == 1
    assert media_files_purge(now=timezone.now() + timedelta(days=8)) == 0  # once

    with pytest.raises(FileNotFoundError):
        media_open(stored["name"])
    video = client.get(f"/v1/videos/{task_id}", **_auth(raw_key)).json()
    assert (video["status"], video["expired"], "url" in video) == ("completed", True, False)
    content = client.get(f"/v1/videos/{task_id}/content", **_auth(raw_key))
    assert (content.status_code, content.json()["error"]["code"]) == (404, "media_expired")
    assert UsageRecord.objects.get().cost_micro_usd == 4 * VIDEO_SECOND_PRICE  # the charge stays
