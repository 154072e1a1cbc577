"""The catalog admin: pages render, credentials (pooled ones too) stay hidden, refusals can be cleared,
edits reach the catalog snapshot at once."""

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django import forms
from django.contrib.admin import site
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from catalog.admin import AIModelAdmin, credential_status, usd
from catalog.models import AIModel, Route, Upstream, UpstreamCredential
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


def _upstream_form(upstream: Upstream, *, credentials=(), **changes) -> dict:
    """The upstream's change form as a browser posts it. `credentials`: the inline's rows, each a dict of
    its fields (with "id" for a stored one, listed first); stored rows not listed are left alone."""
    data = {
        "name": upstream.name,
        "kind": upstream.kind,
        "base_url": upstream.base_url,
        "api_key": "",
        "connect_timeout": upstream.connect_timeout,
        "first_byte_timeout": upstream.first_byte_timeout or "",
        "read_timeout": upstream.read_timeout,
        "total_timeout": upstream.total_timeout or "",
        "max_concurrency": upstream.max_concurrency or "",
        "health_probe": "on" if upstream.health_probe else None,
        "enabled": "on" if upstream.enabled else "",
        "credentials-TOTAL_FORMS": len(credentials),
        "credentials-INITIAL_FORMS": sum(1 for row in credentials if "id" in row),
        "credentials-MIN_NUM_FORMS": 0,
        "credentials-MAX_NUM_FORMS": 1000,
        "_save": "Save",
    }
    for i, row in enumerate(credentials):
        data.update({f"credentials-{i}-{key}": value for key, value in {"upstream": upstream.pk, **row}.items()})
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


# --- upstream timeouts, key pool and refusals ----------------------------------

POOLED_SECRET = "sk-pooled-never-shown-31c4a7"


@pytest.fixture
def pooled_upstream(literal_upstream):
    """The literal upstream with a demo model routed to it and one pooled credential."""
    model = AIModel.objects.create(slug="pool-model", name="Pool", vendor="Acme", input_per_1m=1, output_per_1m=1)
    Route.objects.create(model=model, upstream=literal_upstream, upstream_model="pool-model")
    UpstreamCredential.objects.create(upstream=literal_upstream, label="backup", api_key=POOLED_SECRET)
    return literal_upstream


def _credential_row(credential: UpstreamCredential, **changes) -> dict:
    row = {
        "id": credential.pk,
        "label": credential.label,
        "api_key": "",
        "enabled": "on" if credential.enabled else None,
    }
    row.update(changes)
    return row


def _pool_of(slug: str) -> list[str]:
    return [label for label, _ in model_get(slug=slug).routes[0].credentials]


def test_upstream_page_edits_the_new_timeouts_capacity_and_probe(admin_client_, literal_upstream):
    url = reverse("admin:catalog_upstream_change", args=[literal_upstream.pk])
    page = admin_client_.get(url).content.decode()
    for label in ("First byte timeout", "Idle timeout", "Total timeout", "Max concurrency", "Health probe"):
        assert label in page

    response = admin_client_.post(
        url,
        _upstream_form(
            literal_upstream, first_byte_timeout="20", total_timeout="120", max_concurrency="4", health_probe="on"
        ),
    )

    assert response.status_code == 302
    literal_upstream.refresh_from_db()
    assert (literal_upstream.first_byte_timeout, literal_upstream.total_timeout) == (20.0, 120.0)
    assert (literal_upstream.max_concurrency, literal_upstream.health_probe) == (4, True)
    assert literal_upstream.api_key == SECRET


def test_a_credential_added_in_the_inline_is_stored_and_never_rendered(admin_client_, literal_upstream):
    url = reverse("admin:catalog_upstream_change", args=[literal_upstream.pk])
    new_row = {"label": "second", "api_key": POOLED_SECRET, "enabled": "on"}

    response = admin_client_.post(url, _upstream_form(literal_upstream, credentials=[new_row]))

    assert response.status_code == 302
    credential = UpstreamCredential.objects.get(upstream=literal_upstream, label="second")
    assert (credential.api_key, credential.enabled, credential.failed_at) == (POOLED_SECRET, True, None)
    page = admin_client_.get(url).content.decode()
    assert POOLED_SECRET not in page
    assert SECRET not in page
    assert 'name="credentials-0-api_key"' in page
    assert page.count('type="password"') >= 2  # the upstream's key and the credential's
    assert "second" in page


def test_a_form_sent_back_with_errors_does_not_echo_a_typed_credential(admin_client_, literal_upstream):
    url = reverse("admin:catalog_upstream_change", args=[literal_upstream.pk])
    new_row = {"label": "second", "api_key": POOLED_SECRET, "enabled": "on"}

    response = admin_client_.post(
        url,
        _upstream_form(
            literal_upstream,
            credentials=[new_row],
            api_key="sk-typed-upstream-key",
            max_concurrency="0",
            total_timeout="-1",
        ),
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert "Ensure this value is greater than or equal to 1." in body  # max_concurrency
    assert "Must be more than 0 seconds." in body  # total_timeout
    assert POOLED_SECRET not in body
    assert "sk-typed-upstream-key" not in body
    assert not UpstreamCredential.objects.filter(label="second").exists()


def test_the_credential_inline_saves_reach_the_catalog_snapshot_at_once(admin_client_, pooled_upstream):
    url = reverse("admin:catalog_upstream_change", args=[pooled_upstream.pk])
    backup = UpstreamCredential.objects.get(label="backup")
    assert _pool_of("pool-model") == ["primary", "backup"]

    admin_client_.post(
        url,
        _upstream_form(
            pooled_upstream,
            credentials=[_credential_row(backup, enabled=None), {"label": "third", "api_key": "env:THIRD_KEY"}],
        ),
    )

    backup.refresh_from_db()
    assert (backup.enabled, backup.api_key) == (False, POOLED_SECRET)  # blank keeps the stored key
    assert UpstreamCredential.objects.get(label="third").enabled is False
    assert _pool_of("pool-model") == ["primary"]  # "third" names an unset variable: no key, not in the pool


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"label": "no-key", "api_key": "", "enabled": "on"}, "Give the key, or env:VAR."),
        ({"label": "primary", "api_key": "sk-x", "enabled": "on"}, "names the upstream&#x27;s own API key"),
        ({"label": "bad", "api_key": "env:", "enabled": "on"}, "env: must be followed by a variable name"),
        ({"label": "backup", "api_key": "sk-x", "enabled": "on"}, "already has a credential labelled"),
    ],
)
def test_the_credential_inline_refuses_a_bad_row(admin_client_, pooled_upstream, row, error):
    url = reverse("admin:catalog_upstream_change", args=[pooled_upstream.pk])

    response = admin_client_.post(url, _upstream_form(pooled_upstream, credentials=[row]))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert UpstreamCredential.objects.filter(upstream=pooled_upstream).count() == 1


def test_a_refused_credential_is_shown_and_put_back_in_rotation(admin_client_, pooled_upstream):
    refused_at = timezone.now() - timedelta(minutes=5)
    UpstreamCredential.objects.filter(label="backup").update(failed_at=refused_at)
    backup = UpstreamCredential.objects.get(label="backup")
    url = reverse("admin:catalog_upstream_change", args=[pooled_upstream.pk])
    assert _pool_of("pool-model") == ["primary"]

    page = admin_client_.get(url).content.decode()
    assert f"{refused_at:%Y-%m-%d %H:%M:%S} UTC" in page
    assert POOLED_SECRET not in page

    # Saving the upstream without ticking the box keeps the refusal.
    admin_client_.post(url, _upstream_form(pooled_upstream, read_timeout="30"))
    backup.refresh_from_db()
    assert backup.failed_at == refused_at

    response = admin_client_.post(
        url, _upstream_form(pooled_upstream, credentials=[_credential_row(backup, clear_refusal="on")])
    )

    assert response.status_code == 302
    backup.refresh_from_db()
    assert (backup.failed_at, backup.api_key) == (None, POOLED_SECRET)
    assert _pool_of("pool-model") == ["primary", "backup"]


def test_a_new_key_for_a_refused_credential_puts_it_back(admin_client_, pooled_upstream):
    UpstreamCredential.objects.filter(label="backup").update(failed_at=timezone.now())
    backup = UpstreamCredential.objects.get(label="backup")

    admin_client_.post(
        reverse("admin:catalog_upstream_change", args=[pooled_upstream.pk]),
        _upstream_form(pooled_upstream, credentials=[_credential_row(backup, api_key="sk-replacement")]),
    )

    backup.refresh_from_db()
    assert (backup.api_key, backup.failed_at) == ("sk-replacement", None)


def test_the_refused_primary_key_is_shown_and_put_back_in_rotation(admin_client_, pooled_upstream):
    Upstream.objects.filter(pk=pooled_upstream.pk).update(api_key_failed_at=timezone.now())
    pooled_upstream.refresh_from_db()
    url = reverse("admin:catalog_upstream_change", args=[pooled_upstream.pk])
    assert _pool_of("pool-model") == ["backup"]

    page = admin_client_.get(url).content.decode()
    assert "Refused by the upstream" in page
    assert "out of rotation until put back" in page
    assert 'name="clear_refusal"' in page

    admin_client_.post(url, _upstream_form(pooled_upstream, read_timeout="30"))
    pooled_upstream.refresh_from_db()
    assert pooled_upstream.api_key_failed_at is not None

    admin_client_.post(url, _upstream_form(pooled_upstream, clear_refusal="on"))

    pooled_upstream.refresh_from_db()
    assert (pooled_upstream.api_key_failed_at, pooled_upstream.api_key) == (None, SECRET)
    assert _pool_of("pool-model") == ["primary", "backup"]
    assert 'name="clear_refusal"' not in admin_client_.get(url).content.decode()


def test_the_upstream_list_shows_the_pool_and_its_refusals_in_a_fixed_number_of_queries(
    admin_client_, pooled_upstream, django_assert_max_num_queries
):
    Upstream.objects.filter(pk=pooled_upstream.pk).update(api_key_failed_at=timezone.now())
    UpstreamCredential.objects.create(upstream=pooled_upstream, label="spare", api_key="sk-2", failed_at=timezone.now())
    UpstreamCredential.objects.create(upstream=pooled_upstream, label="off", api_key="sk-3", enabled=False)
    for n in range(5):  # more upstreams with pools: still no query per row
        other = Upstream.objects.create(name=f"other-{n}", base_url="https://example.com/v1", api_key="env:X")
        UpstreamCredential.objects.create(upstream=other, label="a", api_key="sk-a")

    with django_assert_max_num_queries(12):
        response = admin_client_.get(reverse("admin:catalog_upstream_changelist") + "?q=literal")

    body = response.content.decode()
    assert '<td class="field-key_pool">3, 2 refused</td>' in body  # primary, backup, spare; "off" is disabled
    assert '<td class="field-refused">primary, spare</td>' in body
    assert POOLED_SECRET not in body and SECRET not in body
    assert reverse("admin:catalog_upstream_health") in body


def test_the_list_action_puts_every_refused_credential_back(admin_client_, pooled_upstream):
    Upstream.objects.filter(pk=pooled_upstream.pk).update(api_key_failed_at=timezone.now())
    UpstreamCredential.objects.filter(label="backup").update(failed_at=timezone.now())
    assert model_get(slug="pool-model").routes == ()  # every credential refused: the route is skipped

    response = admin_client_.post(
        reverse("admin:catalog_upstream_changelist"),
        {"action": "credentials_restore", ACTION_CHECKBOX_NAME: [pooled_upstream.pk]},
        follow=True,
    )

    assert "Put 2 refused credentials back in rotation." in response.content.decode()
    assert Upstream.objects.get(pk=pooled_upstream.pk).api_key_failed_at is None
    assert UpstreamCredential.objects.get(label="backup").failed_at is None
    assert _pool_of("pool-model") == ["primary", "backup"]


# --- model routing and fallbacks -------------------------------------------------


def _model_form(model: AIModel, **changes) -> dict:
    """The model's change form as a browser posts it (no route rows)."""
    # The form's foreign key (alias_of) asks the request's user what it may add or change.
    staff = SimpleNamespace(user=SimpleNamespace(has_perm=lambda *args: True, is_active=True, is_staff=True))
    admin_form = AIModelAdmin(AIModel, site).get_form(staff, model)
    data = {"routes-TOTAL_FORMS": 0, "routes-INITIAL_FORMS": 0, "routes-MIN_NUM_FORMS": 0, "routes-MAX_NUM_FORMS": 1000}
    for name, field in admin_form.base_fields.items():
        value = getattr(model, name)
        if isinstance(field, forms.JSONField):
            data[name] = json.dumps(value)
        elif isinstance(field, forms.BooleanField):
            data[name] = "on" if value else None
        elif isinstance(value, Model):
            data[name] = value.pk
        else:
            data[name] = "" if value is None else value
    data.update(changes, _save="Save")
    return {key: value for key, value in data.items() if value is not None}


def test_model_page_edits_routing_and_fallbacks(admin_client_):
    model = AIModel.objects.get(slug="gpt-4o")
    url = reverse("admin:catalog_aimodel_change", args=[model.pk])
    assert "Routing" in admin_client_.get(url).content.decode()

    response = admin_client_.post(
        url, _model_form(model, routing="latency", fallbacks='["gpt-4o-mini", "beluga-demo"]')
    )

    assert response.status_code == 302
    model.refresh_from_db()
    assert (model.routing, model.fallbacks) == ("latency", ["gpt-4o-mini", "beluga-demo"])
    assert model_get(slug="gpt-4o").fallbacks == ("gpt-4o-mini", "beluga-demo")


@pytest.mark.parametrize(
    ("fallbacks", "error"),
    [
        ('["gpt-4o-mini", "no-such-model"]', "No model with the id &#x27;no-such-model&#x27;."),
        ('["gpt-4o"]', "A model cannot fall back to itself."),
        ('"gpt-4o-mini"', "Must be a JSON list of model ids"),
    ],
)
def test_model_page_refuses_bad_fallbacks(admin_client_, fallbacks, error):
    model = AIModel.objects.get(slug="gpt-4o")

    response = admin_client_.post(
        reverse("admin:catalog_aimodel_change", args=[model.pk]), _model_form(model, fallbacks=fallbacks)
    )

    assert response.status_code == 200
    assert error in response.content.decode()
    model.refresh_from_db()
    assert model.fallbacks == []


def test_an_emptied_fallbacks_box_clears_them_and_a_form_without_routing_keeps_it(admin_client_):
    AIModel.objects.filter(slug="gpt-4o").update(routing="latency", fallbacks=["gpt-4o-mini"])
    model = AIModel.objects.get(slug="gpt-4o")
    data = _model_form(model, fallbacks="")
    del data["routing"]

    response = admin_client_.post(reverse("admin:catalog_aimodel_change", args=[model.pk]), data)

    assert response.status_code == 302
    model.refresh_from_db()
    assert (model.routing, model.fallbacks) == ("latency", [])


# --- variants and request settings --------------------------------------------------


def test_model_page_edits_a_variant_and_its_settings(admin_client_):
    variant = AIModel.objects.get(slug="gemini-2.5-flash-thinking")
    url = reverse("admin:catalog_aimodel_change", args=[variant.pk])
    page = admin_client_.get(url).content.decode()
    assert "Variant and request settings" in page and "thinking_budget" in page

    form = _model_form(variant, request_defaults='{"thinking_budget": 2048}', request_overrides="")
    response = admin_client_.post(url, form)

    assert response.status_code == 302
    variant.refresh_from_db()
    assert (variant.variant_of.slug, variant.request_defaults, variant.request_overrides) == (
        "gemini-2.5-flash",
        {"thinking_budget": 2048},
        {},
    )
    assert model_get(slug="gemini-2.5-flash-thinking").request_defaults == {"thinking_budget": 2048}


def test_model_page_refuses_bad_settings_and_a_variant_of_a_variant(admin_client_):
    variant = AIModel.objects.get(slug="gemini-2.5-flash-thinking")
    url = reverse("admin:catalog_aimodel_change", args=[variant.pk])

    response = admin_client_.post(url, _model_form(variant, request_overrides='{"reasoning_effort": "max"}'))
    assert response.status_code == 200
    assert "reasoning_effort must be one of none, minimal, low, medium, high" in response.content.decode()

    other = AIModel.objects.get(slug="gemini-2.5-flash-nothinking")
    response = admin_client_.post(url, _model_form(variant, variant_of=other.pk))
    assert response.status_code == 200
    assert "is itself a variant or an alias" in response.content.decode()
    variant.refresh_from_db()
    assert variant.variant_of.slug == "gemini-2.5-flash"
