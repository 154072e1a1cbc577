"""Prices: a model lacking one is never served, and every price change is kept in its history."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from accounts.models import User
from catalog.catalog_file import catalog_file_read
from catalog.importer import catalog_import
from catalog.models import PRICE_FIELDS, REQUIRED_PRICES, SALE_PRICES, AIModel, Category, PriceChange
from catalog.selectors import catalog_cache_clear, model_get, models_unpriced, price_history
from catalog.services import model_prices_record
from tests.test_catalog_import import SEED_FILE

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser():
    return User.objects.create_superuser(email="root@example.com", password="x-admin-password-x")


@pytest.fixture
def admin_client_(client, superuser):
    client.force_login(superuser)
    return client


def model_create(**fields) -> AIModel:
    return AIModel.objects.create(**{"slug": "acme-1", "name": "Acme One", "vendor": "Acme", **fields})


def admin_form(model: AIModel, **changes) -> dict:
    """The model's change form as the browser posts it (no routes)."""
    data = {
        "slug": model.slug,
        "name": model.name,
        "vendor": model.vendor,
        "category": model.category,
        "description": model.description,
        "context_window": model.context_window or "",
        "max_output_tokens": model.max_output_tokens or "",
        **{name: "" if getattr(model, name) is None else getattr(model, name) for name in PRICE_FIELDS},
        **{
            name: "on"
            for name in ("enabled", "supports_stream", "supports_vision", "supports_tools", "supports_json")
            if getattr(model, name)
        },
        "routes-TOTAL_FORMS": "0",
        "routes-INITIAL_FORMS": "0",
        "routes-MIN_NUM_FORMS": "0",
        "routes-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    data.update(changes)
    return data


# --- which prices a model needs ------------------------------------------------


def test_every_category_names_the_prices_it_needs():
    assert set(REQUIRED_PRICES) == set(Category.values)
    assert all(set(names) <= set(SALE_PRICES) for names in REQUIRED_PRICES.values())


@pytest.mark.parametrize(("category", "needed"), sorted(REQUIRED_PRICES.items()))
def test_model_info_is_priced_only_with_every_price_its_category_needs(category, needed):
    model = model_create(category=category)
    assert model_get(slug="acme-1").priced is False
    assert model.missing_prices() == list(needed)
    assert models_unpriced() == ["acme-1"]

    for name in needed[:-1]:
        setattr(model, name, 5)
    model.save()
    assert model.missing_prices() == [needed[-1]]
    assert list(AIModel.objects.unpriced()) == [model]

    setattr(model, needed[-1], 0)  # free, on purpose
    model.save()
    assert model.missing_prices() == []
    assert list(AIModel.objects.priced().filter(pk=model.pk)) == [model]
    catalog_cache_clear()
    info = model_get(slug="acme-1")
    assert info.priced is True
    assert models_unpriced() == []


def test_model_info_prices_are_integers_even_when_not_set():
    model_create(category="image", per_image=40_000)

    info = model_get(slug="acme-1")

    assert info.priced is True
    assert (info.per_image, info.input_per_1m, info.output_per_1m, info.per_minute) == (40_000, 0, 0, 0)
    assert info.cached_input_per_1m is None  # still "the input price"


def test_a_disabled_model_without_a_price_is_no_problem():
    model_create(enabled=False)

    assert models_unpriced() == []


# --- the price history ---------------------------------------------------------


def test_recording_prices_appends_only_when_they_changed(superuser):
    model = model_create(input_per_1m=100, output_per_1m=200)

    first = model_prices_record(model=model, source=PriceChange.Source.ADMIN, changed_by=superuser)
    assert model_prices_record(model=model, source=PriceChange.Source.ADMIN) is None
    model.output_per_1m = 300
    model.save()
    second = model_prices_record(model=model, source=PriceChange.Source.IMPORT)

    assert price_history(model=model) == [second, first]
    assert (first.prices["output_per_1m"], second.prices["output_per_1m"]) == (200, 300)
    assert (first.changed_by, second.changed_by) == (superuser, None)
    assert first.prices == {**model.prices(), "output_per_1m": 200}


def test_a_price_edit_in_the_admin_is_recorded_and_the_old_price_kept(admin_client_, superuser):
    add = admin_client_.post(
        reverse("admin:catalog_aimodel_add"),
        admin_form(AIModel(slug="acme-1", name="Acme One", vendor="Acme"), input_per_1m=100, output_per_1m=200),
    )
    assert add.status_code == 302, add.context["adminform"].form.errors if add.context else add
    model = AIModel.objects.get(slug="acme-1")
    url = reverse("admin:catalog_aimodel_change", args=[model.pk])

    response = admin_client_.post(url, admin_form(model, output_per_1m=250))
    assert response.status_code == 302
    admin_client_.post(url, admin_form(AIModel.objects.get(pk=model.pk), description="no price change"))

    new, old = price_history(model=model)
    assert (old.prices["input_per_1m"], old.prices["output_per_1m"]) == (100, 200)
    assert (new.prices["input_per_1m"], new.prices["output_per_1m"]) == (100, 250)
    assert new.prices["per_image"] is None
    assert (new.source, new.changed_by, old.changed_by) == ("admin", superuser, superuser)
    assert model_get(slug="acme-1").output_per_1m == 250
    page = admin_client_.get(url).content.decode()
    assert "Price history (newest first)" in page
    assert page.index("output /1M $0.00025<") < page.index("output /1M $0.0002<")


def test_a_list_price_left_empty_in_the_admin_is_not_known(admin_client_):
    add = admin_client_.post(
        reverse("admin:catalog_aimodel_add"),
        admin_form(AIModel(slug="acme-1", name="Acme One", vendor="Acme"), input_per_1m=100, output_per_1m=200),
    )
    assert add.status_code == 302, add.context["adminform"].form.errors if add.context else add
    model = AIModel.objects.get(slug="acme-1")

    response = admin_client_.post(
        reverse("admin:catalog_aimodel_change", args=[model.pk]),
        admin_form(model, input_per_1m_list=150, output_per_1m_list="", per_image_list=0),
    )

    assert response.status_code == 302
    model.refresh_from_db()
    assert (model.input_per_1m_list, model.output_per_1m_list, model.per_image_list) == (150, None, 0)
    [latest, _] = price_history(model=model)
    assert (latest.prices["output_per_1m_list"], latest.prices["per_image_list"]) == (None, 0)


def test_saving_an_enabled_model_without_a_price_warns(admin_client_):
    response = admin_client_.post(
        reverse("admin:catalog_aimodel_add"),
        admin_form(AIModel(slug="acme-1", name="Acme One", vendor="Acme", category="image", enabled=True)),
        follow=True,
    )

    body = response.content.decode()
    assert "Model acme-1 is enabled without a price (per_image)" in body
    assert "503 model_not_priced" in body
    assert AIModel.objects.get(slug="acme-1").per_image is None


def test_import_records_new_and_changed_prices_once():
    data = {"models": [{"id": "acme-1", "vendor": "Acme", "price": {"input_per_1m": 1, "output_per_1m": 2}}]}

    catalog_import(data=data)
    catalog_import(data=data)
    data["models"][0]["price"]["output_per_1m"] = 3
    catalog_import(data=data)
    catalog_import(data={"models": [{"id": "acme-1", "description": "prices untouched"}]})

    history = price_history(model=AIModel.objects.get(slug="acme-1"))
    assert [(h.source, h.prices["output_per_1m"]) for h in history] == [("import", 3), ("import", 2)]


def test_a_dry_run_import_records_nothing():
    before = PriceChange.objects.count()

    catalog_import(data={"models": [{"id": "acme-1", "vendor": "Acme", "price": {"input_per_1m": 1}}]}, dry_run=True)

    assert PriceChange.objects.count() == before


# --- shown as a problem ----------------------------------------------------------


def test_admin_model_list_flags_enabled_models_without_a_price(admin_client_):
    model_create(slug="acme-unpriced", category="video")
    model_create(slug="acme-retired", enabled=False)
    url = reverse("admin:catalog_aimodel_changelist")

    response = admin_client_.get(url)
    missing = admin_client_.get(url + "?price=missing")
    priced = admin_client_.get(url + "?price=set")

    body = response.content.decode()
    assert "1 enabled model has no price and is refused (503 model_not_priced): acme-unpriced." in body
    assert "?price=missing&amp;enabled__exact=1" in body
    assert {m.slug for m in missing.context["cl"].queryset} == {"acme-unpriced", "acme-retired"}
    priced_slugs = {m.slug for m in priced.context["cl"].queryset}
    assert "gpt-4o" in priced_slugs and not priced_slugs & {"acme-unpriced", "acme-retired"}
    row = next(m for m in missing.context["cl"].result_list if m.slug == "acme-unpriced")
    assert missing.context["cl"].model_admin.unit_price(row) == "missing / s of video"


def test_admin_model_list_says_nothing_when_every_enabled_model_is_priced(admin_client_):
    model_create(category="chat", input_per_1m=0, output_per_1m=0)

    body = admin_client_.get(reverse("admin:catalog_aimodel_changelist")).content.decode()

    assert "model_not_priced" not in body


def test_enabling_models_without_a_price_warns(admin_client_):
    model = model_create(enabled=False)

    response = admin_client_.post(
        reverse("admin:catalog_aimodel_changelist"),
        {"action": "enable_selected", "_selected_action": [model.pk]},
        follow=True,
    )

    body = response.content.decode()
    assert "Enabled 1 model." in body
    assert "Enabled without a price, refused with 503 model_not_priced until priced: acme-1." in body


# --- the migration -----------------------------------------------------------------


def _sale_prices_in_db(slug: str) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute("SELECT input_per_1m, output_per_1m, per_image FROM catalog_aimodel WHERE slug = %s", [slug])
        return cursor.fetchone()


@pytest.mark.django_db(transaction=True)
def test_price_migration_keeps_every_price_and_reverses():
    catalog_import(data=catalog_file_read(path=SEED_FILE))  # an earlier transactional test may have flushed it
    model_create(slug="acme-free", input_per_1m=0, output_per_1m=0)
    model_create(slug="acme-unpriced")

    call_command("migrate", "catalog", "0006", verbosity=0)

    assert _sale_prices_in_db("acme-free")[:2] == _sale_prices_in_db("acme-unpriced")[:2] == (0, 0)
    assert _sale_prices_in_db("gpt-4o")[:2] == (1_750_000, 7_000_000)

    call_command("migrate", verbosity=0)

    assert _sale_prices_in_db("gpt-4o")[:2] == (1_750_000, 7_000_000)
    assert _sale_prices_in_db("acme-unpriced")[:2] == (0, 0)  # 0 was the only "no price" before
    seeded = {entry["id"] for entry in catalog_file_read(path=SEED_FILE)["models"]}
    for model in AIModel.objects.all():
        history = price_history(model=model)
        # One entry per model (0007), one more where 0008 added prices by option (dall-e-3, ...), and
        # one more where 0013 emptied the list prices not known (a seeded model's unused units).
        assert len(history) == 1 + bool(model.per_image_by_option) + (model.slug in seeded), model.slug
        assert {(change.source, change.changed_by) for change in history} == {("migration", None)}
        assert history[0].prices == model.prices()


def _list_prices_in_db(slug: str) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT input_per_1m_list, output_per_1m_list, per_image_list FROM catalog_aimodel WHERE slug = %s", [slug]
        )
        return cursor.fetchone()


@pytest.mark.django_db(transaction=True)
def test_list_price_migration_empties_the_unknown_ones_keeps_a_free_zero_and_reverses():
    catalog_import(data=catalog_file_read(path=SEED_FILE))  # an earlier transactional test may have flushed it
    model_create(slug="acme-omitted", input_per_1m=5, output_per_1m=7, input_per_1m_list=10)
    model_create(slug="acme-free", input_per_1m=0, output_per_1m=0, input_per_1m_list=0, output_per_1m_list=0)

    call_command("migrate", "catalog", "0012", verbosity=0)

    # Before, 0 stood for "not known": an omitted list price read as an official price of $0.
    assert _list_prices_in_db("acme-omitted") == (10, 0, 0)
    assert _list_prices_in_db("acme-free") == (0, 0, 0)

    call_command("migrate", "catalog", verbosity=0)

    assert _list_prices_in_db("acme-omitted") == (10, None, None)
    assert _list_prices_in_db("acme-free") == (0, 0, None)  # 0 beside a free sale price: the official price
    assert _list_prices_in_db("gpt-4o")[:2] == (2_500_000, 10_000_000)
    for slug in ("acme-omitted", "acme-free"):
        model = AIModel.objects.get(slug=slug)
        latest = price_history(model=model)[0]
        assert (latest.source, latest.prices) == ("migration", model.prices())
