"""Existing installs: Anthropic and Google upstreams speak their native protocols,
seeded models get their cache prices, and the seeded embedding models appear.

Touches only what an operator has not changed: an upstream still at the old
OpenAI-compatible URL, a cache price still empty, a model not there yet. A
fresh install got all of it from 0002 except the cache prices (0002's model
had no such fields), which this fills.
"""

from pathlib import Path

from django.db import migrations

SEED_FILE = Path(__file__).resolve().parent.parent / "seed" / "catalog.yaml"
# (upstream name, old kind, old base URL, native kind, native base URL)
NATIVE_UPSTREAMS = (
    ("anthropic", "openai", "https://api.anthropic.com/v1", "anthropic", "https://api.anthropic.com"),
    (
        "google",
        "openai",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "gemini",
        "https://generativelanguage.googleapis.com",
    ),
)
CACHE_PRICE_FIELDS = (
    ("price", "cached_input_per_1m", ""),
    ("price", "cache_write_per_1m", ""),
    ("list_price", "cached_input_per_1m", "_list"),
    ("list_price", "cache_write_per_1m", "_list"),
)


def _seed():
    from catalog.catalog_file import catalog_file_read

    return catalog_file_read(path=SEED_FILE)


def forward(apps, schema_editor):
    from catalog.importer import catalog_import

    alias = schema_editor.connection.alias
    Upstream = apps.get_model("catalog", "Upstream")
    AIModel = apps.get_model("catalog", "AIModel")
    for name, old_kind, old_url, kind, url in NATIVE_UPSTREAMS:
        Upstream.objects.using(alias).filter(name=name, kind=old_kind, base_url=old_url).update(kind=kind, base_url=url)
    data = _seed()
    rows = {m.slug: m for m in AIModel.objects.using(alias).all()}
    missing = [entry for entry in data.get("models") or [] if entry["id"] not in rows]
    for entry in data.get("models") or []:
        row = rows.get(entry["id"])
        if row is None:
            continue
        changed = []
        for block, key, suffix in CACHE_PRICE_FIELDS:
            value = (entry.get(block) or {}).get(key)
            if value is not None and getattr(row, key + suffix) is None:
                setattr(row, key + suffix, value)
                changed.append(key + suffix)
        if changed:
            row.save(using=alias, update_fields=changed)
    if missing:
        catalog_import(data={"models": missing}, apps=apps, using=alias)


def backward(apps, schema_editor):
    alias = schema_editor.connection.alias
    Upstream = apps.get_model("catalog", "Upstream")
    AIModel = apps.get_model("catalog", "AIModel")
    for name, old_kind, old_url, kind, url in NATIVE_UPSTREAMS:
        Upstream.objects.using(alias).filter(name=name, kind=kind, base_url=url).update(kind=old_kind, base_url=old_url)
    seeded = [entry["id"] for entry in _seed().get("models") or [] if entry.get("category") == "embedding"]
    AIModel.objects.using(alias).filter(slug__in=seeded, category="embedding").delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_cache_prices_embedding_category")]
    operations = [migrations.RunPython(forward, backward)]
