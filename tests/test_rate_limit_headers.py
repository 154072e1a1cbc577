"""Calls that are authenticated but not counted (reading the key, polling, listing) still carry the
key's rate-limit headers, read without counting, in the bucket their kind of call counts in."""

from __future__ import annotations

import pytest

from tests.fixtures_gateway import chat_body, in_one_window, post_chat

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

LIMIT = "X-RateLimit-Limit-Requests"
REMAINING = "X-RateLimit-Remaining-Requests"
RESET = "X-RateLimit-Reset-Requests"


def get(client, raw_key: str, path: str):
    return client.get(path, headers={"Authorization": f"Bearer {raw_key}"})


def test_reading_the_key_shows_the_chat_window_without_counting(client, chat_route, raw_key, fake_upstream):
    def calls():
        return [
            get(client, raw_key, "/v1/key"),
            get(client, raw_key, "/v1/key"),
            post_chat(client, raw_key, chat_body()),
            get(client, raw_key, "/v1/key"),
        ]

    before, again, chat, after = in_one_window(calls)

    assert [r.status_code for r in (before, again, chat, after)] == [200, 200, 200, 200]
    assert before[LIMIT] == chat[LIMIT] == "300"  # the Pro plan's chat limit
    assert int(before[REMAINING]) == int(again[REMAINING])  # reading the key is not counted
    assert int(chat[REMAINING]) == int(before[REMAINING]) - 1
    assert int(after[REMAINING]) == int(chat[REMAINING])
    assert int(after[RESET]) >= int(before[RESET])


@pytest.mark.parametrize("path", ["/v1/videos", "/api/v1/videos"])
def test_listing_videos_shows_the_image_window(client, raw_key, path):
    response = get(client, raw_key, path)

    assert response.status_code == 200
    assert response[LIMIT] == "60"  # the Pro plan's image limit


def test_an_error_after_authentication_still_carries_the_window(client, raw_key):
    response = get(client, raw_key, "/v1/images/tasks/task_does_not_exist")

    assert response.status_code == 404
    assert response[LIMIT] == "60"


def test_without_a_key_there_is_no_window_to_show(client, db):
    response = client.get("/v1/models")

    assert response.status_code == 200
    assert LIMIT not in response


def test_models_listed_with_a_key_show_the_chat_window(client, raw_key):
    response = get(client, raw_key, "/v1/models")

    assert response.status_code == 200
    assert response[LIMIT] == "300"
