"""Fixtures for the fake media upstream (tests/fake_media.py): one server per session, clean per test."""

import pytest

from tests.fake_media import FakeMedia


@pytest.fixture(scope="session")
def _fake_media_server():
    fake = FakeMedia().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_media(_fake_media_server) -> FakeMedia:
    """The fake OpenAI-media and Replicate upstream, with no requests, jobs, faults or scripts."""
    _fake_media_server.reset()
    yield _fake_media_server
    _fake_media_server.reset()
