"""Fixtures for media calls: image and video models routed to the fake media upstream, and a Celery worker.

The worker is a real Celery worker (threads pool) running in this process on the test broker:
Redis when REDIS_URL is set, the embedded filesystem transport otherwise, as `make run` uses.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import pytest

IMAGE_PRICE = 40_000  # micro-USD per image
VIDEO_SECOND_PRICE = 100_000  # micro-USD per second of video
GPT_IMAGE_SIZES = ["1024x1024", "1536x1024", "1024x1536", "auto"]
ASPECT_SIZES = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"]


@dataclass
class MediaRoute:
    model: object
    upstream: object
    route: object


@pytest.fixture
def media_route(db, fake_media):
    """`media_route(slug, kind, category, upstream_model, **model fields)`: a media model routed to the fake."""
    from catalog.models import AIModel, Route, Upstream
    from catalog.selectors import catalog_cache_clear

    upstreams = {}

    def make(slug, *, kind="openai", category="image", upstream_model=None, **fields) -> MediaRoute:
        upstream = upstreams.get(kind)
        if upstream is None:
            upstream = upstreams[kind] = Upstream.objects.create(
                name=f"fake-media-{kind}",
                kind=kind,
                # OpenAI-style base URLs carry the version (…/v1); Google's does not.
                base_url=fake_media.base_url if kind == "gemini" else fake_media.api_url,
                api_key="media-secret-" + secrets.token_hex(8),
                connect_timeout=2.0,
                read_timeout=5.0,
            )
        defaults = {"per_image": IMAGE_PRICE} if category == "image" else {"per_video_second": VIDEO_SECOND_PRICE}
        model = AIModel.objects.create(
            slug=slug, name=slug, vendor="Test", category=category, supports_stream=False, **{**defaults, **fields}
        )
        route = Route.objects.create(model=model, upstream=upstream, upstream_model=upstream_model or slug)
        catalog_cache_clear()
        return MediaRoute(model=model, upstream=upstream, route=route)

    return make


@pytest.fixture(scope="session")
def _media_worker():
    from celery.contrib.testing.worker import start_worker

    from gateway.celery import app

    app.loader.import_default_modules()
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10, loglevel="WARNING"
    ) as worker:
        yield worker


@pytest.fixture
def media_worker(transactional_db, _media_worker, settings):
    """A real Celery worker (in this process) moving media tasks, polling the fake every 50-200 ms.

    At the end of the test every task it could still move is ended: the worker outlives the test,
    and a task ending during the next test's table flush would deadlock with it (PostgreSQL)."""
    from gateway.media.jobs import OPEN_STATUSES, task_cancel
    from gateway.models import MediaTask

    settings.BELUGA = {**settings.BELUGA, "JOB_POLL_FIRST_SECONDS": 0.05, "JOB_POLL_MAX_SECONDS": 0.2}
    yield _media_worker
    deadline = time.monotonic() + 5
    while MediaTask.objects.filter(status__in=OPEN_STATUSES).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for task in MediaTask.objects.filter(status__in=OPEN_STATUSES):
        task_cancel(task)
