"""HTTPS_ONLY: plain HTTP is redirected, except the health probes and the metrics scrape."""

from __future__ import annotations

import pytest


@pytest.fixture
def https_only(settings):
    settings.SECURE_SSL_REDIRECT = True


@pytest.mark.parametrize("path", ["/v1/health", "/api/v1/health"])
def test_health_probes_answer_over_plain_http(client, db, https_only, path):
    response = client.get(path)

    assert response.status_code == 200
    assert response.json()["status"]


def test_metrics_is_not_redirected(client, db, https_only):
    assert client.get("/metrics").status_code != 301


@pytest.mark.parametrize("path", ["/v1/models", "/api/v1/models", "/login/"])
def test_everything_else_is_redirected_to_https(client, db, https_only, path):
    response = client.get(path)

    assert response.status_code == 301
    assert response["Location"].startswith("https://")
