"""GET /v1/health: no key needed, database and catalog state, 503 when the database is down."""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
def test_health_is_ok_without_a_key(client, chat_route, prefix):
    response = client.get(f"{prefix}/health")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Request-Id"]
    body = json.loads(response.content)
    assert body["status"] == "ok"
    assert body["database"] == "ok"


# Seeded and enabled without a route: refused with 503, not listed. None since migration 0015.
SEEDED_WITHOUT_ROUTE: list[str] = []


def test_health_reports_catalog_counts(client, chat_route):
    from catalog.models import AIModel, Upstream
    from catalog.selectors import models_public

    body = json.loads(client.get("/v1/health").content)

    assert body["catalog"] == {
        "models_enabled": AIModel.objects.filter(enabled=True).count(),
        "models_listed": models_public().count(),
        "upstreams_configured": Upstream.objects.filter(enabled=True).count(),
        "unpriced_models": [],
        "unrouted_models": SEEDED_WITHOUT_ROUTE,
    }
    assert body["catalog"]["models_enabled"] - body["catalog"]["models_listed"] == len(SEEDED_WITHOUT_ROUTE)


def test_health_names_enabled_models_without_a_route(client, chat_route):
    from catalog.models import AIModel, Route

    AIModel.objects.create(slug="acme-unrouted", name="Acme", vendor="Acme", input_per_1m=1, output_per_1m=1)
    AIModel.objects.create(slug="acme-latest", name="Acme", vendor="Acme", alias_of=chat_route.model)
    Route.objects.filter(pk=chat_route.route.pk).update(enabled=False)

    body = json.loads(client.get("/v1/health").content)

    assert body["catalog"]["unrouted_models"] == sorted(
        ["acme-latest", "acme-unrouted", chat_route.model.slug, *SEEDED_WITHOUT_ROUTE]
    )
    assert body["status"] == "ok"  # they are refused, as the seed's are; the service itself is up


def test_health_is_degraded_and_names_enabled_models_without_a_price(client, chat_route):
    from catalog.models import AIModel

    AIModel.objects.create(slug="acme-unpriced", name="Acme", vendor="Acme", category="image")
    AIModel.objects.create(slug="acme-half", name="Acme", vendor="Acme", category="chat", input_per_1m=1)
    AIModel.objects.create(slug="acme-retired", name="Acme", vendor="Acme", enabled=False)
    AIModel.objects.create(slug="acme-free", name="Acme", vendor="Acme", input_per_1m=0, output_per_1m=0)

    response = client.get("/v1/health")

    assert response.status_code == 200  # the service is up; those models are refused
    body = json.loads(response.content)
    assert body["status"] == "degraded"
    assert body["database"] == "ok"
    assert body["catalog"]["unpriced_models"] == ["acme-half", "acme-unpriced"]


def test_health_ignores_a_bad_key(client, db):
    response = client.get("/v1/health", headers={"Authorization": "Bearer bapi_" + "H" * 43})

    assert response.status_code == 200


def test_health_is_503_when_the_database_is_down(client, db, monkeypatch):
    from gateway import views

    class DownConnection:
        def cursor(self):
            raise OperationalError("could not connect to server")

    monkeypatch.setattr(views, "connection", DownConnection())

    response = client.get("/v1/health")

    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["database"] == "error"
    assert body["status"] != "ok"
    assert (body["error"]["type"], body["error"]["code"]) == ("service_unavailable_error", "database_unavailable")
    assert "could not connect" not in response.content.decode()
    assert response["X-Request-Id"]


def test_health_on_the_live_server(live_api):
    import requests

    response = requests.get(f"{live_api}/v1/health", timeout=10)

    assert response.status_code == 200
    assert response.json()["database"] == "ok"
