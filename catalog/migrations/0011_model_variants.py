"""Model variants and request settings (catalog/request_settings.py).

The seeded '-thinking' / '-nothinking' models were routes with `params` in the
upstream's own protocol. They become variants of their base model, with the
seed's request settings: a model still as seeded (no settings, no variant) is
given them, and its own route is removed when it is still exactly the one the
seed made (a route an admin changed is kept, and is used before the base's);
one without a base model in the seed keeps its route, without the params.
Reversed, those routes and params come back.
"""

from pathlib import Path

from django.db import migrations, models
import django.db.models.deletion

SEED_FILE = Path(__file__).resolve().parent.parent / "seed" / "catalog.yaml"

_CLAUDE = {"thinking": {"type": "enabled", "budget_tokens": 8192}, "temperature": 1}


def _gemini(thinking_config):
    return {"generationConfig": {"thinkingConfig": thinking_config}}


# The seed's earlier routes: model → (upstream, upstream model, params).
SEEDED_ROUTES = {
    "claude-opus-4-6-thinking": ("anthropic", "claude-opus-4-6", _CLAUDE),
    "claude-opus-4-5-20251101-thinking": ("anthropic", "claude-opus-4-5-20251101", _CLAUDE),
    "claude-sonnet-4-6-thinking": ("anthropic", "claude-sonnet-4-6", _CLAUDE),
    "claude-sonnet-4-5-20250929-thinking": ("anthropic", "claude-sonnet-4-5-20250929", _CLAUDE),
    "claude-haiku-4-5-20251001-thinking": ("anthropic", "claude-haiku-4-5-20251001", _CLAUDE),
    "claude-3-7-sonnet-20250219-thinking": ("anthropic", "claude-3-7-sonnet-20250219", _CLAUDE),
    "gemini-3-pro-preview-thinking": (
        "google",
        "gemini-3-pro-preview",
        _gemini({"thinkingLevel": "high", "includeThoughts": True}),
    ),
    "gemini-3-flash-preview-nothinking": ("google", "gemini-3-flash-preview", _gemini({"thinkingLevel": "minimal"})),
    "gemini-2.5-pro-thinking": ("google", "gemini-2.5-pro", _gemini({"thinkingBudget": -1, "includeThoughts": True})),
    "gemini-2.5-pro-nothinking": ("google", "gemini-2.5-pro", _gemini({"thinkingBudget": 128})),
    "gemini-2.5-flash-thinking": (
        "google",
        "gemini-2.5-flash",
        _gemini({"thinkingBudget": -1, "includeThoughts": True}),
    ),
    "gemini-2.5-flash-nothinking": ("google", "gemini-2.5-flash", _gemini({"thinkingBudget": 0})),
}


def variants_seed(apps, schema_editor):
    from catalog.catalog_file import catalog_file_read

    alias = schema_editor.connection.alias
    AIModel = apps.get_model("catalog", "AIModel")
    Route = apps.get_model("catalog", "Route")
    for entry in catalog_file_read(path=SEED_FILE).get("models") or []:
        settings = {key: entry[key] for key in ("request_defaults", "request_overrides") if key in entry}
        if not settings and "variant_of" not in entry:
            continue
        model = AIModel.objects.using(alias).filter(slug=entry["id"]).first()
        if model is None or model.variant_of_id or model.request_defaults or model.request_overrides:
            continue  # not seeded here, or an admin has set it up already
        base = AIModel.objects.using(alias).filter(slug=entry.get("variant_of") or "").first()
        for key, value in settings.items():
            setattr(model, key, value)
        model.variant_of = base
        model.save(using=alias)
        seeded = SEEDED_ROUTES.get(model.slug)
        if seeded is not None:
            upstream, upstream_model, params = seeded
            routes = Route.objects.using(alias).filter(
                model=model, upstream__name=upstream, upstream_model=upstream_model, params=params
            )
            if base is not None:
                routes.delete()  # the base model's routes serve it now
            else:
                routes.update(params={})  # its own route stays, the settings say what the params said


def variants_unseed(apps, schema_editor):
    alias = schema_editor.connection.alias
    AIModel = apps.get_model("catalog", "AIModel")
    Route = apps.get_model("catalog", "Route")
    Upstream = apps.get_model("catalog", "Upstream")
    for slug, (upstream_name, upstream_model, params) in SEEDED_ROUTES.items():
        model = AIModel.objects.using(alias).filter(slug=slug).first()
        upstream = Upstream.objects.using(alias).filter(name=upstream_name).first()
        if model is None or upstream is None:
            continue
        routes = Route.objects.using(alias).filter(model=model)
        if not routes.exists():
            Route.objects.using(alias).create(
                model=model, upstream=upstream, upstream_model=upstream_model, params=params
            )
        else:
            routes.filter(upstream=upstream, upstream_model=upstream_model, params={}).update(params=params)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0010_model_aliases"),
    ]

    operations = [
        migrations.AddField(
            model_name="aimodel",
            name="variant_of",
            field=models.ForeignKey(
                blank=True,
                help_text="This model is served by that model's routes (when it has none of its own), with its "
                "request settings below; it keeps its own id, prices and fallbacks.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="variants",
                to="catalog.aimodel",
            ),
        ),
        migrations.AddField(
            model_name="aimodel",
            name="request_defaults",
            field=models.JSONField(
                blank=True,
                db_default={},
                default=dict,
                help_text="Settings for every call where the client sets none, e.g. "
                '{"thinking_budget": 8192}. Keys: thinking, thinking_budget, reasoning_effort, include_thoughts, '
                "max_tokens, temperature, top_p, top_k (docs/protocols.md).",
            ),
        ),
        migrations.AddField(
            model_name="aimodel",
            name="request_overrides",
            field=models.JSONField(
                blank=True,
                db_default={},
                default=dict,
                help_text='Settings for every call, over the client\'s own, e.g. {"thinking": false}. Same keys.',
            ),
        ),
        migrations.RunPython(variants_seed, variants_unseed),
    ]
