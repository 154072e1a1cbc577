"""Seed the catalog from catalog/seed/catalog.yaml through the importer.

The file is read when the migration runs, so a fresh install gets the current
seed. Databases migrated earlier pick up later seed edits with
`manage.py catalog_import catalog/seed/catalog.yaml`.
"""

from pathlib import Path

from django.db import migrations

SEED_FILE = Path(__file__).resolve().parent.parent / "seed" / "catalog.yaml"


def seed_catalog(apps, schema_editor):
    from catalog.catalog_file import catalog_file_read
    from catalog.importer import catalog_import

    catalog_import(data=catalog_file_read(path=SEED_FILE), apps=apps, using=schema_editor.connection.alias)


def unseed_catalog(apps, schema_editor):
    from catalog.catalog_file import catalog_file_read

    data = catalog_file_read(path=SEED_FILE)
    alias = schema_editor.connection.alias
    AIModel = apps.get_model("catalog", "AIModel")
    Upstream = apps.get_model("catalog", "Upstream")
    # Routes go with their model or upstream (on_delete=CASCADE).
    AIModel.objects.using(alias).filter(slug__in=[m["id"] for m in data.get("models") or []]).delete()
    Upstream.objects.using(alias).filter(name__in=[u["name"] for u in data.get("upstreams") or []]).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed_catalog, unseed_catalog)]
