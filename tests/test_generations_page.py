"""The Generations page: an account's media tasks with previews under Beluga's own signed links."""

import os
import re
import struct
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gateway.media.jobs import public_id_new
from gateway.media.storage import media_save
from gateway.models import MediaTask

PASSWORD = "correct-horse-battery-staple"
UPSTREAM_POLL_URL = "https://api.upstream.example/v1/predictions/upstream-job-7f3a/status"
UPSTREAM_JOB_ID = "upstream-job-7f3a"
VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64  # enough for a <video> element to exist

# Playwright's sync API runs an event loop in this thread; Django would otherwise
# refuse ORM calls from it (the live server itself runs in its own thread).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


def png_bytes(width: int = 4, height: int = 3) -> bytes:
    """A real PNG (solid blue), so that a browser decodes it to a natural width."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x25\x57\xd6" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Stored files go to this test's own folder."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }
    return tmp_path


@pytest.fixture
def task_factory(db):
    counter = {"n": 0}

    def make(*, user, kind=MediaTask.Kind.IMAGE, status=MediaTask.Status.COMPLETED, minutes_ago=None, **fields):
        counter["n"] += 1
        created_at = timezone.now() - timedelta(minutes=counter["n"] if minutes_ago is None else minutes_ago)
        fields.setdefault("params", {"prompt": f"prompt number {counter['n']}"})
        return MediaTask.objects.create(
            public_id=public_id_new(kind),
            kind=kind,
            user=user,
            request_id=f"req-gen-{counter['n']}",
            model=fields.pop("model", "gpt-image-2"),
            status=status,
            created_at=created_at,
            upstream="replicate",
            upstream_job_id=UPSTREAM_JOB_ID,
            upstream_poll_url=UPSTREAM_POLL_URL,
            **fields,
        )

    return make


def stored(data: bytes, content_type: str, prefix: str) -> dict:
    saved = media_save(data=data, content_type=content_type, prefix=prefix)
    return {"name": saved.name, "content_type": saved.content_type, "size": saved.size}


@pytest.fixture
def member(user_factory):
    return user_factory(email="member@example.com", password=PASSWORD)


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


def row_ids(response) -> list[str]:
    return re.findall(r'data-task-id="([^"]+)"', response.content.decode())


def media_urls(html: str, tag: str, attribute: str = "src") -> list[str]:
    return re.findall(rf'<{tag}\b[^>]*\b{attribute}="([^"]+)"', html)


def test_generations_page_requires_login(client, db):
    response = client.get("/generations/")
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/generations/"


def test_lists_only_the_accounts_own_tasks_newest_first(member_client, member, user_factory, task_factory):
    older = task_factory(user=member, minutes_ago=30)
    newer = task_factory(user=member, kind=MediaTask.Kind.VIDEO, minutes_ago=5, model="sora-2")
    stranger = task_factory(user=user_factory(), params={"prompt": "someone else's secret idea"})

    response = member_client.get("/generations/")
    assert response.status_code == 200
    assert row_ids(response) == [newer.public_id, older.public_id]
    html = response.content.decode()
    assert stranger.public_id not in html
    assert "someone else&#x27;s secret idea" not in html and "secret idea" not in html
    assert 'href="/generations/" aria-current="page">Generations</a>' in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["image", "video", "speech", "transcription", "image-failed"]),
        ("?kind=images", ["image", "image-failed"]),
        ("?kind=videos", ["video"]),
        ("?kind=audio", ["speech", "transcription"]),
        ("?status=failed", ["image-failed"]),
        ("?kind=images&status=completed", ["image"]),
        ("?kind=videos&status=failed", []),
    ],
)
def test_filters_by_kind_group_and_status(member_client, member, task_factory, query, expected):
    Kind, Status = MediaTask.Kind, MediaTask.Status
    tasks = {
        "image": task_factory(user=member, kind=Kind.IMAGE),
        "video": task_factory(user=member, kind=Kind.VIDEO),
        "speech": task_factory(user=member, kind=Kind.SPEECH, params={"voice": "alloy"}),
        "transcription": task_factory(user=member, kind=Kind.TRANSCRIPTION),
        "image-failed": task_factory(user=member, kind=Kind.IMAGE, status=Status.FAILED),
    }
    response = member_client.get(f"/generations/{query}")
    assert response.status_code == 200
    assert row_ids(response) == [tasks[name].public_id for name in expected]
    if not expected:
        assert "No generations match this filter." in response.content.decode()


def test_an_unknown_filter_value_is_a_400_with_the_form_error(member_client, member, task_factory):
    task_factory(user=member)
    response = member_client.get("/generations/?kind=spreadsheets")
    assert response.status_code == 400
    assert row_ids(response) == []
    assert "Select a valid choice" in response.content.decode()


def test_pages_hold_25_tasks_and_keep_the_filter(member_client, member, task_factory):
    tasks = [task_factory(user=member, minutes_ago=n) for n in range(30)]  # newest first
    task_factory(user=member, kind=MediaTask.Kind.VIDEO, minutes_ago=100)

    first = member_client.get("/generations/?kind=images")
    assert row_ids(first) == [task.public_id for task in tasks[:25]]
    html = first.content.decode()
    assert "Page 1 of 2" in html
    assert 'href="?kind=images&amp;page=2" rel="next"' in html

    second = member_client.get("/generations/?kind=images&page=2")
    assert row_ids(second) == [task.public_id for task in tasks[25:]]
    assert 'rel="prev"' in second.content.decode()


def test_statuses_are_shown_with_progress_and_the_failure_message(member_client, member, task_factory):
    Status = MediaTask.Status
    task_factory(user=member, status=Status.QUEUED)
    task_factory(user=member, status=Status.IN_PROGRESS, progress=42)
    task_factory(
        user=member,
        status=Status.FAILED,
        error_code="content_policy_violation",
        error_message="The prompt was rejected by the safety system.",
    )
    task_factory(user=member, status=Status.CANCELLED)
    task_factory(user=member, status=Status.COMPLETED, cost_micro_usd=28_000)

    html = member_client.get("/generations/").content.decode()
    assert '<span class="badge badge--status-queued" data-testid="task-status">queued</span>' in html
    assert '<span class="badge badge--status-in_progress" data-testid="task-status">in progress 42%</span>' in html
    assert '<span class="badge badge--status-failed" data-testid="task-status">failed</span>' in html
    assert '<p class="gen-error" data-testid="task-error">The prompt was rejected by the safety system.</p>' in html
    assert '<span class="badge badge--status-cancelled" data-testid="task-status">cancelled</span>' in html
    assert '<span class="badge badge--status-completed" data-testid="task-status">completed</span>' in html
    assert "$0.028000" in html


def test_rows_show_model_short_prompt_voice_and_utc_time(member_client, member, task_factory):
    long_prompt = "A beluga whale " + "swimming under arctic ice " * 10
    image = task_factory(user=member, params={"prompt": long_prompt}, model="gpt-image-2")
    task_factory(user=member, kind=MediaTask.Kind.SPEECH, params={"voice": "coral", "input": "Hello"}, model="tts-1")
    MediaTask.objects.filter(pk=image.pk).update(created_at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC))

    html = member_client.get("/generations/").content.decode()
    assert "<code>gpt-image-2</code>" in html and "<code>tts-1</code>" in html
    assert "2031-05-06 07:08:09" in html
    shown = re.search(r'<td class="gen-prompt">([^<]*)</td>', html).group(1)
    assert shown.startswith("A beluga whale swimming under arctic ice") and shown.endswith("…")
    assert len(shown) <= 80
    assert '<td class="gen-prompt">voice: coral</td>' in html


def test_nothing_of_the_upstream_job_reaches_the_page(member_client, member, task_factory):
    task_factory(user=member, status=MediaTask.Status.IN_PROGRESS, progress=10)
    task_factory(user=member, status=MediaTask.Status.FAILED, error_message="Generation failed.")
    task_factory(user=member, results=[stored(png_bytes(), "image/png", "images")])

    html = member_client.get("/generations/").content.decode()
    assert UPSTREAM_JOB_ID not in html
    assert UPSTREAM_POLL_URL not in html
    assert "upstream.example" not in html
    assert "replicate" not in html


def test_previews_and_downloads_are_signed_links_that_serve_the_stored_bytes(member_client, member, task_factory):
    image_data, video_data = png_bytes(), VIDEO_BYTES
    image = task_factory(user=member, results=[stored(image_data, "image/png", "images")])
    video = task_factory(user=member, kind=MediaTask.Kind.VIDEO, results=[stored(video_data, "video/mp4", "videos")])

    html = member_client.get("/generations/").content.decode()
    thumbnails = media_urls(html, "img")
    videos = media_urls(html, "video")
    assert len(thumbnails) == 1 and len(videos) == 1
    assert re.search(r'<img [^>]*loading="lazy"', html)
    assert re.search(r'<video controls preload="none"', html)
    for url in (*thumbnails, *videos):
        assert url.startswith("http://testserver/v1/media/")
    assert f'download="{image.public_id}-1.png"' in html
    assert f'download="{video.public_id}-1.mp4"' in html

    response = member_client.get(thumbnails[0])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == image_data
    response = member_client.get(videos[0])
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == video_data


def test_at_most_four_thumbnails_but_a_download_link_per_image(member_client, member, task_factory):
    results = [{"name": f"images/2030/01/{n}.png", "content_type": "image/png", "size": 10} for n in range(6)]
    task_factory(user=member, results=results)

    html = member_client.get("/generations/").content.decode()
    assert len(media_urls(html, "img")) == 4
    assert len(media_urls(html, "a", "download")) == 6


def test_speech_gets_an_audio_player_and_a_transcription_only_a_download(member_client, member, task_factory):
    speech_file = {"name": "speech/2030/01/a.mp3", "content_type": "audio/mpeg", "size": 2048}
    transcript_file = {"name": "transcriptions/2030/01/t.txt", "content_type": "text/plain", "size": 300}
    task_factory(user=member, kind=MediaTask.Kind.SPEECH, params={"voice": "alloy"}, results=[speech_file])
    stt = task_factory(user=member, kind=MediaTask.Kind.TRANSCRIPTION, results=[transcript_file])

    html = member_client.get("/generations/").content.decode()
    assert len(re.findall(r'<audio controls preload="none" src="http://testserver/v1/media/', html)) == 1
    assert "<video" not in html and "<img" not in html
    assert f'download="{stt.public_id}-1.txt"' in html


def test_empty_state_explains_how_to_generate(member_client, user_factory, task_factory):
    task_factory(user=user_factory())  # someone else's
    html = member_client.get("/generations/").content.decode()
    assert 'data-testid="generations-empty"' in html
    assert "curl http://testserver/v1/images/generations" in html
    assert "Authorization: Bearer bapi_..." in html


def test_query_count_does_not_grow_with_rows(member_client, member, task_factory, django_assert_max_num_queries):
    def add_tasks(count):
        for _ in range(count):
            task_factory(
                user=member, results=[{"name": "images/2030/01/x.png", "content_type": "image/png", "size": 1}]
            )

    add_tasks(3)
    with CaptureQueriesContext(connection) as few:
        assert len(row_ids(member_client.get("/generations/"))) == 3
    # The session, the user, the page of tasks and its count: nothing per row.
    assert len(few) <= 4

    add_tasks(27)
    with django_assert_max_num_queries(len(few)):
        assert len(row_ids(member_client.get("/generations/"))) == 25


# --- in a real browser ------------------------------------------------------------------


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_shows_the_image_thumbnail_and_the_video(page, live_server, user_factory, task_factory):
    from playwright.sync_api import expect

    user = user_factory(email="gallery@example.com", password=PASSWORD)
    image = task_factory(user=user, results=[stored(png_bytes(8, 6), "image/png", "images")], minutes_ago=1)
    video = task_factory(
        user=user, kind=MediaTask.Kind.VIDEO, model="sora-2", results=[stored(VIDEO_BYTES, "video/mp4", "videos")]
    )
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto("/login/")
    page.get_by_label("Email").fill("gallery@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/dashboard/")

    page.get_by_role("link", name="Generations").click()
    expect(page).to_have_url(f"{live_server.url}/generations/")
    expect(page.locator("#generations tbody tr")).to_have_count(2)

    thumbnail = page.locator(f'tr[data-task-id="{image.public_id}"] img.gen-thumb')
    expect(thumbnail).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    assert thumbnail.evaluate("img => img.naturalWidth") == 8

    player = page.locator(f'tr[data-task-id="{video.public_id}"] video')
    expect(player).to_have_count(1)
    assert player.evaluate("v => v.controls && v.preload") == "none"
    assert player.get_attribute("src").startswith(f"{live_server.url}/v1/media/")
    assert errors == []
