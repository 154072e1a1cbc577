"""Routes for seeded models that had none (every call was a 503): five image and video models
go through the seed's `replicate` upstream, as catalog/seed/catalog.yaml now says.

On an install migrated earlier, a model gets its route only when it has no route at all (one an
admin added is left to serve it) and the `replicate` upstream exists. Its media options change
to the seed's new ones (the input names, sizes and image counts the Replicate model takes) only
while they are still exactly the seed's old ones, so an admin's edit is kept. Backwards, a route
still as made here is removed and media options still as set here go back.
A fresh install has these from the seed already (0002, 0008): nothing changes then.
"""

from django.db import migrations

UPSTREAM = "replicate"

# model id → the Replicate model it is routed to
ROUTES = {
    "seedream-5.0-lite": "bytedance/seedream-5-lite",
    "qwen-image-2.0-pro": "qwen/qwen-image-2-pro",
    "grok-imagine-1.0-apimart": "xai/grok-imagine-image",
    "veo-3.1": "google/veo-3.1",
    "veo-3.1-fast": "google/veo-3.1-fast",
}

_SEEDED_IMAGE = {"sizes": ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"], "max_n": 4}
_SEEDED_VEO = {"durations": [4, 6, 8], "sizes": ["16:9", "9:16"], "resolutions": ["720p", "1080p"], "image_input": True}

# model id → (the seed's earlier media options, its new ones)
MEDIA = {
    "qwen-image-2.0-pro": (
        _SEEDED_IMAGE,
        {"sizes": ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "2:1", "1:2"], "max_n": 1},
    ),
    "grok-imagine-1.0-apimart": (
        _SEEDED_IMAGE,
        {"sizes": ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"], "max_n": 1},
    ),
    "veo-3.1": (_SEEDED_VEO, {**_SEEDED_VEO, "input_names": {"seconds": "duration"}}),
    "veo-3.1-fast": (_SEEDED_VEO, {**_SEEDED_VEO, "input_names": {"seconds": "duration"}}),
}


def _media_swap(apps, alias, *, backwards: bool) -> None:
    AIModel = apps.get_model("catalog", "AIModel")
    for model in AIModel.objects.using(alias).filter(slug__in=list(MEDIA)):
        before, after = MEDIA[model.slug][::-1] if backwards else MEDIA[model.slug]
        if model.media_options == before:  # compared as Python values: key order does not matter
            model.media_options = after
            model.save(using=alias, update_fields=["media_options"])


def routes_seed(apps, schema_editor):
    alias = schema_editor.connection.alias
    AIModel = apps.get_model("catalog", "AIModel")
    Route = apps.get_model("catalog", "Route")
    Upstream = apps.get_model("catalog", "Upstream")
    upstream = Upstream.objects.using(alias).filter(name=UPSTREAM).first()
    if upstream is not None:
        for model in AIModel.objects.using(alias).filter(slug__in=list(ROUTES)):
            if not Route.objects.using(alias).filter(model=model).exists():
                Route.objects.using(alias).create(model=model, upstream=upstream, upstream_model=ROUTES[model.slug])
    _media_swap(apps, alias, backwards=False)


def routes_unseed(apps, schema_editor):
    alias = schema_editor.connection.alias
    Route = apps.get_model("catalog", "Route")
    routes = Route.objects.using(alias).filter(model__slug__in=list(ROUTES), upstream__name=UPSTREAM)
    for route in routes.select_related("model"):
        as_made = (route.upstream_model, route.priority, route.weight, route.enabled, route.params)
        if as_made == (ROUTES[route.model.slug], 0, 1, True, {}):
            route.delete()
    _media_swap(apps, alias, backwards=True)


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0013_list_prices_unknown"),
    ]

    operations = [
        migrations.RunPython(routes_seed, routes_unseed),
    ]
