"""The admin's live upstream health table (and its JSON), and the attempts of a usage record."""

import os

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import User
from billing.models import UsageRecord
from catalog.models import AIModel, Route, Upstream, UpstreamCredential
from catalog.selectors import model_get
from catalog.services import upstream_credential_refused
from gateway.routing import breakers
from gateway.routing.slots import slot_take

pytestmark = pytest.mark.django_db

HEALTH_URL = "/admin/catalog/upstream/health/"


@pytest.fixture
def admin_client_(client):
    client.force_login(User.objects.create_superuser(email="root@example.com", password="x-admin-password-x"))
    return client


@pytest.fixture
def failing_upstream(settings):
    """An upstream whose breaker (and its model's) two failed calls opened, through gateway.routing.breakers."""
    settings.BELUGA = {**settings.BELUGA, "BREAKER_MIN_CALLS": 2, "BREAKER_COOLDOWN_SECONDS": 300.0}
    upstream = Upstream.objects.create(name="aa-failing", base_url="https://failing.example/v1", api_key="sk-f")
    for _ in range(2):
        breakers.failed(breakers.admit(upstream_id=upstream.pk, model="gpt-4o"))
    Route.objects.create(model=AIModel.objects.get(slug="gpt-4o"), upstream=upstream, upstream_model="gpt-4o")
    return upstream


@pytest.fixture
def busy_upstream():
    """An upstream with a cap of 4 and one call in flight, whose pooled credential "backup" was refused."""
    upstream = Upstream.objects.create(
        name="aa-busy", base_url="https://busy.example/v1", api_key="sk-busy-secret-value", max_concurrency=4
    )
    UpstreamCredential.objects.create(upstream=upstream, label="backup", api_key="sk-backup-secret-value")
    UpstreamCredential.objects.create(upstream=upstream, label="spare", api_key="env:SPARE_KEY")
    model = AIModel.objects.create(slug="busy-model", name="Busy", vendor="Acme", input_per_1m=1, output_per_1m=1)
    Route.objects.create(model=model, upstream=upstream, upstream_model="busy-model")
    assert slot_take(model_get(slug="busy-model").routes[0])  # a lease id
    upstream_credential_refused(upstream_id=upstream.pk, label="backup")
    return upstream


def _row(rows: list[dict], name: str) -> dict:
    return next(row for row in rows if row["name"] == name)


def test_the_json_health_reports_breakers_keys_and_slots(admin_client_, failing_upstream, busy_upstream, settings):
    response = admin_client_.get(HEALTH_URL, {"format": "json"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["window_seconds"] == settings.BELUGA["BREAKER_WINDOW_SECONDS"]
    rows = body["upstreams"]
    assert [row["name"] for row in rows] == sorted(row["name"] for row in rows)
    assert _row(rows, "aa-failing") == {
        "name": "aa-failing",
        "kind": "openai",
        "state": "open",
        "breaker": "open",
        "models_open": ["gpt-4o"],
        "requests": 2,
        "failures": 2,
        "credentials": 1,
        "credentials_refused": [],
        "in_flight": None,
        "max_concurrency": None,
        "url": reverse("admin:catalog_upstream_change", args=[failing_upstream.pk]),
    }
    busy = _row(rows, "aa-busy")
    assert (busy["state"], busy["breaker"], busy["models_open"]) == ("degraded", "closed", [])
    assert (busy["credentials"], busy["credentials_refused"]) == (2, ["backup"])
    assert (busy["in_flight"], busy["max_concurrency"]) == (1, 4)
    assert _row(rows, "local-simulator")["state"] == "healthy"
    assert "sk-busy-secret-value" not in response.content.decode()


def test_the_health_page_renders_the_same_states_and_refreshes_itself(admin_client_, failing_upstream, busy_upstream):
    response = admin_client_.get(HEALTH_URL)

    assert response.status_code == 200
    body = response.content.decode()
    failing_url = reverse("admin:catalog_upstream_change", args=[failing_upstream.pk])
    assert f'<th scope="row"><a href="{failing_url}">aa-failing</a></th>' in body
    assert '<span class="health-badge health-open">open</span>' in body
    assert '<span class="health-badge health-degraded">degraded</span>' in body
    assert '<span class="health-badge health-healthy">healthy</span>' in body
    assert "<td>1 / 4</td>" in body  # in flight / cap
    assert "<td>backup</td>" in body  # refused
    assert "<td>2 / 2</td>" in body  # calls / failures
    assert 'data-url="/admin/catalog/upstream/health/?format=json"' in body
    assert "setInterval(refresh, 5000)" in body
    assert "sk-busy-secret-value" not in body and "sk-backup-secret-value" not in body


def test_the_upstream_list_links_to_the_health_page(admin_client_):
    body = admin_client_.get(reverse("admin:catalog_upstream_changelist")).content.decode()

    assert f'<a href="{HEALTH_URL}">Health</a>' in body


@pytest.mark.parametrize("query", ["", "?format=json"])
def test_the_health_page_is_for_staff_only(client, user_factory, query):
    anonymous = client.get(HEALTH_URL + query)
    client.force_login(user_factory())
    customer = client.get(HEALTH_URL + query)

    for response in (anonymous, customer):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_the_upstream_view_permission_is_refused(client):
    staff = User.objects.create_user(email="staff@example.com", password="x-staff-password-x", is_staff=True)
    client.force_login(staff)

    assert client.get(HEALTH_URL, {"format": "json"}).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_upstream"))
    assert client.get(HEALTH_URL, {"format": "json"}).status_code == 200


# --- usage records: every attempt ------------------------------------------------

ATTEMPTS = [
    {
        "upstream": "openai-a",
        "model": "gpt-4o",
        "credential": "backup",
        "status": 503,
        "outcome": "http_503",
        "latency_ms": 812,
    },
    {
        "upstream": "openai-b",
        "model": "gpt-4o",
        "credential": "primary",
        "status": None,
        "outcome": "timeout",
        "latency_ms": 30000,
    },
    {
        "upstream": "openai-c",
        "model": "gpt-4o-mini",
        "credential": "primary",
        "status": 200,
        "outcome": "ok",
        "latency_ms": 95,
    },
]


def _record(user, n: int, attempts=ATTEMPTS) -> UsageRecord:
    return UsageRecord.objects.create(
        request_id=f"req_{n}", user=user, model="gpt-4o", endpoint="chat", status_code=200, attempts=attempts
    )


def test_a_usage_record_shows_each_attempt_on_a_line(admin_client_, user_factory):
    record = _record(user_factory(), 1)

    response = admin_client_.get(reverse("admin:billing_usagerecord_change", args=[record.pk]))

    assert response.status_code == 200
    body = response.content.decode()
    assert (
        "<ol><li>openai-a · gpt-4o · backup · 503 · http_503 · 812 ms</li>"
        "<li>openai-b · gpt-4o · primary · — · timeout · 30000 ms</li>"
        "<li>openai-c · gpt-4o-mini · primary · 200 · ok · 95 ms</li></ol>"
    ) in body
    assert "&quot;outcome&quot;" not in body  # not the raw JSON


def test_the_usage_record_list_counts_attempts_without_a_query_per_row(admin_client_, user_factory):
    user = user_factory()
    url = reverse("admin:billing_usagerecord_changelist")
    _record(user, 0, attempts=[])
    with CaptureQueriesContext(connection) as one:
        first = admin_client_.get(url)
    for n in range(1, 8):
        _record(user_factory(), n)
    with CaptureQueriesContext(connection) as many:
        response = admin_client_.get(url)

    assert first.status_code == response.status_code == 200
    assert len(many.captured_queries) == len(one.captured_queries)
    body = response.content.decode()
    assert body.count('<td class="field-tries">3</td>') == 7
    assert body.count('<td class="field-tries">0</td>') == 1


# --- the live refresh, in a real browser ------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_health_table_refreshes_itself_in_a_browser(browser, live_server, settings):
    from playwright.sync_api import expect

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM calls from Playwright's thread
    settings.BELUGA = {**settings.BELUGA, "BREAKER_MIN_CALLS": 2, "BREAKER_COOLDOWN_SECONDS": 300.0}
    User.objects.create_superuser(email="root@example.com", password="x-admin-password-x")
    upstream = Upstream.objects.create(name="aa-browser", base_url="https://browser.example/v1", api_key="sk-b")
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(reverse("admin:login") + "?next=" + HEALTH_URL)
        page.fill("#id_username", "root@example.com")
        page.fill("#id_password", "x-admin-password-x")
        page.get_by_role("button", name="Log in").click()
        row = page.locator("#upstream-health tbody tr", has_text="aa-browser")
        expect(row.locator(".health-badge")).to_have_text("healthy")

        for _ in range(2):
            breakers.failed(breakers.admit(upstream_id=upstream.pk, model="gpt-4o"))

        # No reload: the script fetches ?format=json every 5 s and re-renders the rows.
        expect(row.locator(".health-badge")).to_have_text("open", timeout=12_000)
        expect(row.locator(".health-badge")).to_have_class("health-badge health-open")
        expect(row).to_contain_text("2 / 2")
        expect(page.locator("#health-status")).to_contain_text("Updated")
        expect(row.get_by_role("link", name="aa-browser")).to_have_attribute(
            "href", reverse("admin:catalog_upstream_change", args=[upstream.pk])
        )
    finally:
        context.close()
