"""Routes for the last four seeded image models that had none (every call was a 503): Wan 2.7
Image and Image Pro, Z-Image-Turbo and Grok Imagine Edit go through the seed's `replicate`
upstream, as catalog/seed/catalog.yaml now says. Wan takes its size as a "W*H" string and
Z-Image-Turbo as integer width and height (media option `size_form`), so their media options
change with the route.

On an install migrated earlier, a model's media options change to the seed's new ones only while
they are still exactly the seed's old ones, so an admin's edit is kept. A model gets its route only
when it has no route at all (one an admin added is left to serve it), the `replicate` upstream
exists, and its media options are then the seed's new ones: with other options the upstream would
be sent a size it refuses. Backwards, a route still as made here is removed and media options still
as set here go back. A fresh install has these from the seed already (0002, 0008): nothing changes.
"""

from django.db import migrations

UPSTREAM = "replicate"

# model id → the Replicate model it is routed to
ROUTES = {
    "wan2.7-image": "wan-video/wan-2.7-image",
    "wan2.7-image-pro": "wan-video/wan-2.7-image-pro",
    "z-image-turbo": "prunaai/z-image-turbo",
    "grok-imagine-1.0-edit-apimart": "xai/grok-imagine-image",
}

_SEEDED_SIZES = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"]
_WAN_1K = ["1024x1024", "1280x720", "720x1280", "1024x768", "768x1024"]
_WAN_2K = ["2048x2048", "2048x1152", "1152x2048", "2048x1536", "1536x2048"]
_WAN_4K = ["4096x4096", "4096x2304", "2304x4096", "4096x3072", "3072x4096"]
_Z_IMAGE = [
    "1024x1024", "1280x720", "720x1280", "1152x864", "864x1152", "1248x832", "832x1248",
    "1120x896", "896x1120", "1408x704", "704x1408", "1344x576", "576x1344",
]  # fmt: skip

# model id → (the seed's earlier media options, its new ones)
MEDIA = {
    "wan2.7-image": (
        {"sizes": _SEEDED_SIZES, "max_n": 4},
        {"sizes": _WAN_1K + _WAN_2K, "max_n": 4, "size_form": "W*H"},
    ),
    "wan2.7-image-pro": (
        {"sizes": _SEEDED_SIZES, "max_n": 4},
        {"sizes": _WAN_1K + _WAN_2K + _WAN_4K, "max_n": 4, "size_form": "W*H"},
    ),
    "z-image-turbo": (
        {"sizes": _SEEDED_SIZES, "max_n": 4},
        {"sizes": _Z_IMAGE, "max_n": 1, "size_form": "width_height"},
    ),
    "grok-imagine-1.0-edit-apimart": (
        {"sizes": _SEEDED_SIZES, "max_n": 4, "edits": True},
        {"sizes": ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"], "max_n": 1, "edits": True},
    ),
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
    _media_swap(apps, alias, backwards=False)
    upstream = Upstream.objects.using(alias).filter(name=UPSTREAM).first()
    if upstream is None:
        return
    for model in AIModel.objects.using(alias).filter(slug__in=list(ROUTES)):
        if model.media_options != MEDIA[model.slug][1]:
            continue  # an admin's media options: the Replicate model may refuse what they send
        if not Route.objects.using(alias).filter(model=model).exists():
            Route.objects.using(alias).create(model=model, upstream=upstream, upstream_model=ROUTES[model.slug])


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
        ("catalog", "0014_seed_replicate_routes"),
    ]

    operations = [
        migrations.RunPython(routes_seed, routes_unseed),
    ]
