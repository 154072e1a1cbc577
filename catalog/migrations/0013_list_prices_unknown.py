"""An unknown list (official) price becomes empty, as 0012 allows. Until now one was stored as 0,
which /v1/models showed as an official price of $0.

A list price of 0 becomes empty where it can only be that old stand-in: beside a sale price that
is not 0 (above 0, or not set), or where the seeded catalog's `list_price` leaves that price out
(a seeded model's unused units, which 0002's import stored as 0). A 0 the seed states, or one
beside a sale price of 0 on another model, stays: free on purpose (e.g. an embedding model's
output). Each model changed gets a PriceChange (source "migration") stating its prices.
Backwards, an empty list price becomes 0 again, recorded the same way. (Apart from 0012: on
PostgreSQL a table cannot be altered in the transaction that changed its rows.)
"""

from pathlib import Path

from django.db import migrations
from django.utils import timezone

SEED_FILE = Path(__file__).resolve().parent.parent / "seed" / "catalog.yaml"

# AIModel's price fields as of this migration (frozen: later fields are not here).
SALE_PRICES = ("input_per_1m", "output_per_1m", "per_image", "per_video_second", "per_1m_chars", "per_minute")
CACHE_PRICES = ("cached_input_per_1m", "cache_write_per_1m")
PRICE_FIELDS = (*SALE_PRICES, *CACHE_PRICES, *(f"{name}_list" for name in (*SALE_PRICES, *CACHE_PRICES)))


def _list_prices_set(apps, schema_editor, *, which, value) -> None:
    """Set to `value` each list price for which `which(model, name)` holds; record the models changed."""
    alias = schema_editor.connection.alias
    AIModel = apps.get_model("catalog", "AIModel")
    PriceChange = apps.get_model("catalog", "PriceChange")
    now = timezone.now()
    entries = []
    for model in AIModel.objects.using(alias).order_by("pk"):
        names = [f"{name}_list" for name in SALE_PRICES if which(model, name)]
        if not names:
            continue
        for name in names:
            setattr(model, name, value)
        model.save(using=alias, update_fields=names)
        prices = {name: getattr(model, name) for name in PRICE_FIELDS}
        if model.per_image_by_option:
            prices["per_image_by_option"] = model.per_image_by_option
        entries.append(PriceChange(model=model, prices=prices, changed_at=now, source="migration"))
    PriceChange.objects.using(alias).bulk_create(entries)


def unknown_list_prices_to_null(apps, schema_editor):
    from catalog.catalog_file import catalog_file_read

    # Seeded model id → the list prices its seed entry states.
    stated = {
        entry["id"]: {key for key, price in (entry.get("list_price") or {}).items() if price is not None}
        for entry in catalog_file_read(path=SEED_FILE).get("models") or []
        if "list_price" in entry
    }

    def unknown(model, name) -> bool:
        if getattr(model, f"{name}_list") != 0:
            return False
        return getattr(model, name) != 0 or (model.slug in stated and name not in stated[model.slug])

    _list_prices_set(apps, schema_editor, which=unknown, value=None)


def unknown_list_prices_to_zero(apps, schema_editor):
    # Before 0012, 0 was the only way to say "not known".
    _list_prices_set(apps, schema_editor, which=lambda model, name: getattr(model, f"{name}_list") is None, value=0)


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0012_list_prices_nullable"),
    ]

    operations = [
        migrations.RunPython(unknown_list_prices_to_null, unknown_list_prices_to_zero),
    ]
