"""The catalog admin: pages render, credentials stay hidden, edits reach the catalog snapshot at once."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from accounts.models import User
from catalog.admin import credential_status, usd
from catalog.models import AIModel, Route, Upstream
from catalog.selectors import model_get

pytestmark = pytest.mark.django_db

SECRET = "sk-live-do-not-show-9f8e7d6c"


@pytest.fixture
def admin_client_(client):
    superuser = User.objects.create_superuser(email="root@example.com", password="x-admin-password-x")
    client.force_login(superuser)
    return client


@pytest.fixture
def literal_upstream():
    return Upstream.objects.create(name="literal", base_url="https://example.com/v1", api_key=SECRET)


def _upstream_form(upstream: Upstream, **changes) -> dict:
    data = {
        "name": upstream.name,
        "kind": upstream.kind,
        "base_url": upstream.base_url,
        "api_key": "",
        "connect_timeout": upstream.connect_timeout,
        "read_timeout": upstream.read_timeout,
        "enabled": "on" if upstream.enabled else "",
        "_save": "Save",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


@pytest.mark.parametrize(
    ("micro", "text"),
    [(2_500_000, "$2.50"), (10_000_000, "$10.00"), (75_000, "$0.075"), (4_200, "$0.0042"), (0, "$0.00")],
)
def test_prices_are_shown_as_dollars(micro, text):
    assert usd(micro) == text


@pytest.mark.parametrize(
    "path",
    [
        "",
        "?q=claude",
        "?q=Beluga+Edge",
        "?vendor=Anthropic",
        "?category__exact=reasoning",
        "?enabled__exact=1",
        "?supports_vision__exact=1&supports_tools__exact=1",
        "?o=7",  # by input price
        "?price=missing",
        "?price=set&enabled__exact=1",
    ],
)
def test_model_changelist_search_and_filters_render(admin_client_, path):
    response = admin_client_.get(reverse("admin:catalog_aimodel_changelist") + path)

    assert response.status_code == 200


def test_model_changelist_shows_sale_prices_in_dollars_without_a_query_per_row(
    admin_client_, django_assert_max_num_queries
):
    with django_assert_max_num_queries(15):
        response = admin_client_.get(reverse("admin:catalog_aimodel_changelist"))

    body = response.content.decode()
    assert "gpt-4o-mini" in body
    assert "$1.75" in body  # gpt-4o sale input per 1M (list $2.50, 30% off)
    assert "$0.028 / image" in body  # dall-e-3


def test_model_add_and_change_pages_render_with_route_inline(admin_client_):
    model = AIModel.objects.get(slug="beluga-demo")

    add = admin_client_.get(reverse("admin:catalog_aimodel_add"))
    change = admin_client_.get(reverse("admin:catalog_aimodel_change", args=[model.pk]))

    assert add.status_code == change.status_code == 200
    body = change.content.decode()
    assert "routes-0-upstream_model" in body
    assert "List price (official, micro-USD)" in body


@pytest.mark.parametrize("path", ["", "?q=moonshot", "?kind__exact=openai", "?enabled__exact=0"])
def test_upstream_changelist_never_shows_a_literal_credential(admin_client_, literal_upstream, monkeypatch, path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret-value")

    response = admin_client_.get(reverse("admin:catalog_upstream_changelist") + path)

    assert response.status_code == 200
    body = response.content.decode()
    assert SECRET not in body
    assert "sk-env-secret-value" not in body
    if path == "":
        assert "set (env:OPENAI_API_KEY)" in body
        assert "missing (env:ZHIPU_API_KEY is empty)" in body or "set (env:ZHIPU_API_KEY)" in body


def test_upstream_change_page_never_shows_the_credential(admin_client_, literal_upstream):
    for url in (
        reverse("admin:catalog_upstream_change", args=[literal_upstream.pk]),
        reverse("admin:catalog_upstream_history", args=[literal_upstream.pk]),
        reverse("admin:catalog_upstream_delete", args=[literal_upstream.pk]),
        reverse("admin:catalog_upstream_add"),
    ):
        response = admin_client_.get(url)
        assert response.status_code == 200, url
        assert SECRET not in response.content.decode(), url
    change = admin_client_.get(reverse("admin:catalog_upstream_change", args=[literal_upstream.pk]))
    assert 'type="password"' in change.content.decode()
    assert "Current: set." in change.content.decode()


def test_blank_api_key_on_edit_keeps_the_stored_key(admin_client_, literal_upstream):
    url = reverse("admin:catalog_upstream_change", args=[literal_upstream.pk])

    response = admin_client_.post(url, _upstream_form(literal_upstream, read_timeout="30"))

    assert response.status_code == 302
    literal_upstream.refresh_from_db()
    assert (literal_upstream.api_key, literal_upstream.read_timeout) == (SECRET, 30.0)


def test_api_key_can_be_replaced_or_removed(admin_client_, literal_upstream):
    url = reverse("admin:catalog_upstream_change", args=[literal_upstream.pk])

    admin_client_.post(url, _upstream_form(literal_upstream, api_key="env:NEW_KEY"))
    literal_upstream.refresh_from_db()
    assert literal_upstream.api_key == "env:NEW_KEY"

    admin_client_.post(url, _upstream_form(literal_upstream, clear_api_key="on"))
    literal_upstream.refresh_from_db()
    assert literal_upstream.api_key == ""
    assert credential_status(literal_upstream.api_key) == "missing"


def test_saving_an_upstream_reaches_the_catalog_snapshot_at_once(admin_client_):
    simulator = Upstream.objects.get(name="local-simulator")
    assert model_get(slug="beluga-demo").routes  # snapshot loaded, with the route

    admin_client_.post(
        reverse("admin:catalog_upstream_change", args=[simulator.pk]), _upstream_form(simulator, enabled="")
    )

    assert model_get(slug="beluga-demo").routes == ()
    assert Upstream.objects.get(name="local-simulator").api_key == "simulator"


def test_bulk_disable_action_disables_models_and_clears_the_snapshot(admin_client_):
    models = list(AIModel.objects.filter(slug__in=["beluga-demo", "gpt-4o"]))
    assert model_get(slug="beluga-demo") is not None

    response = admin_client_.post(
        reverse("admin:catalog_aimodel_changelist"),
        {"action": "disable_selected", ACTION_CHECKBOX_NAME: [m.pk for m in models]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Disabled 2 models." in response.content.decode()
    assert not AIModel.objects.filter(pk__in=[m.pk for m in models], enabled=True).exists()
    assert model_get(slug="beluga-demo") is None
    assert model_get(slug="gpt-4o-mini") is not None

    admin_client_.post(
        reverse("admin:catalog_aimodel_changelist"),
        {"action": "enable_selected", ACTION_CHECKBOX_NAME: [m.pk for m in models]},
    )
    assert model_get(slug="beluga-demo") is not None


def test_deleting_a_route_in_admin_clears_the_snapshot(admin_client_):
    route = Route.objects.get(model__slug="beluga-demo")
    assert model_get(slug="beluga-demo").routes

    response = admin_client_.post(reverse("admin:catalog_route_delete", args=[route.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert model_get(slug="beluga-demo").routes == ()


@pytest.mark.parametrize(
    "path", ["", "?q=claude", "?upstream__id__exact=1", "?model__category=reasoning", "?enabled__exact=1"]
)
def test_route_changelist_search_and_filters_render(admin_client_, path):
    response = admin_client_.get(reverse("admin:catalog_route_changelist") + path)

    assert response.status_code == 200


def test_route_change_page_renders(admin_client_):
    route = Route.objects.get(model__slug="gpt-4o")

    response = admin_client_.get(reverse("admin:catalog_route_change", args=[route.pk]))

    assert response.status_code == 200
    assert "gpt-4o" in response.content.decode()
