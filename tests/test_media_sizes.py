"""Sizes written as a prediction upstream takes them (media option `size_form`): the seeded Wan 2.7
models ("W*H"), Z-Image-Turbo (integer width and height) and Grok Imagine Edit (its `image`), called
through the real openai SDK against the fake Replicate server and a real Celery worker; the option's
validation; and migration 0015, which routes those four models on installs migrated earlier."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import openai
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from catalog.catalog_file import CatalogFileError, catalog_file_read, catalog_text_parse
from catalog.importer import catalog_import
from catalog.models import AIModel, Route, Upstream
from catalog.selectors import catalog_cache_clear
from gateway.media.options import ASPECT_LABELS
from tests.fake_media import png_bytes

SEED_FILE = Path(__file__).resolve().parent.parent / "catalog" / "seed" / "catalog.yaml"
ROUTED_BY_0015 = {
    "wan2.7-image": "wan-video/wan-2.7-image",
    "wan2.7-image-pro": "wan-video/wan-2.7-image-pro",
    "z-image-turbo": "prunaai/z-image-turbo",
    "grok-imagine-1.0-edit-apimart": "xai/grok-imagine-image",
}
# What the seed gave the four models before 0015 (grok-imagine-1.0-edit-apimart also had edits: true).
EARLIER_MEDIA = {"sizes": ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"], "max_n": 4}


def _seed_entries(*slugs: str) -> dict:
    """The seed's `replicate` upstream and these models, as a catalog file of their own."""
    seed = catalog_file_read(path=SEED_FILE)
    return {
        "upstreams": [u for u in seed["upstreams"] if u["name"] == "replicate"],
        "models": [m for m in seed["models"] if m["id"] in slugs],
    }


@pytest.fixture
def replicate_fake(transactional_db, fake_media):
    """The seed's four models and `replicate` upstream, as the seed has them, pointed at the fake."""
    catalog_import(data=_seed_entries(*ROUTED_BY_0015))
    Upstream.objects.filter(name="replicate").update(base_url=fake_media.api_url, api_key="r8-test-key")
    catalog_cache_clear()
    fake_media.prediction_polls_to_complete = 1
    return fake_media


def _client(live_api, raw_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_api + "/v1", api_key=raw_key, max_retries=0, timeout=30)


def _submitted_input(fake_media, upstream_model: str) -> dict:
    [submit] = fake_media.requests_to(f"/v1/models/{upstream_model}/predictions", "POST")
    return submit.json["input"]


# --- through the API ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "size", "sent"),
    [
        ("wan2.7-image", None, "1024*1024"),  # the default, 1:1, is the first 1:1 size listed
        ("wan2.7-image", "16:9", "1280*720"),  # labels take the 1K size of their ratio
        ("wan2.7-image", "9:16", "720*1280"),
        ("wan2.7-image", "3:2", "1024*768"),  # a ratio Wan lacks: the nearest one (4:3)
        ("wan2.7-image", "21:9", "1280*720"),
        ("wan2.7-image", "2048x1152", "2048*1152"),  # a size it has, as it is
        ("wan2.7-image", "1920x1080", "2048*1152"),  # same ratio, the closest area
        ("wan2.7-image", "3840x2160", "2048*1152"),  # no 4K on the standard model
        ("wan2.7-image-pro", "3840x2160", "4096*2304"),
        ("wan2.7-image-pro", "4:3", "1024*768"),
    ],
)
def test_wan_gets_its_size_as_one_w_star_h_string(media_worker, live_api, replicate_fake, api_key, model, size, sent):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        images = client.images.generate(model=model, prompt="A beluga", **({"size": size} if size else {}))

    assert len(images.data) == 1
    assert _submitted_input(replicate_fake, ROUTED_BY_0015[model]) == {"prompt": "A beluga", "size": sent}


def test_wan_makes_several_images_in_one_prediction(media_worker, live_api, replicate_fake, api_key):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        images = client.images.generate(model="wan2.7-image", prompt="A beluga", size="9:16", n=3)

    assert len(images.data) == 3
    assert _submitted_input(replicate_fake, "wan-video/wan-2.7-image") == {
        "prompt": "A beluga",
        "size": "720*1280",
        "num_outputs": 3,
    }


@pytest.mark.parametrize(
    ("size", "width", "height"),
    [
        (None, 1024, 1024),
        ("16:9", 1280, 720),
        ("9:16", 720, 1280),
        ("21:9", 1344, 576),
        ("3:2", 1248, 832),
        ("1920x1080", 1280, 720),  # a pixel size it lacks: the size listed for its ratio
        ("auto", 1024, 1024),  # the model's first size
    ],
)
def test_z_image_turbo_gets_integer_width_and_height(
    media_worker, live_api, replicate_fake, api_key, size, width, height
):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        client.images.generate(model="z-image-turbo", prompt="A beluga", **({"size": size} if size else {}))

    sent = _submitted_input(replicate_fake, "prunaai/z-image-turbo")
    assert sent == {"prompt": "A beluga", "width": width, "height": height}
    assert type(sent["width"]) is int and type(sent["height"]) is int  # JSON numbers, not "1280"


def test_z_image_turbo_makes_one_image_a_request(live_api, replicate_fake, api_key):
    _, raw_key = api_key
    with _client(live_api, raw_key) as client, pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model="z-image-turbo", prompt="A beluga", n=2)

    assert raised.value.body["param"] == "n"
    assert replicate_fake.get_count("/v1/models/") == 0


def test_grok_imagine_edit_sends_the_upload_as_its_image_input(media_worker, live_api, replicate_fake, api_key):
    upload = png_bytes((1, 2, 3))
    _, raw_key = api_key
    with _client(live_api, raw_key) as client:
        result = client.images.edit(
            model="grok-imagine-1.0-edit-apimart",
            image=("in.png", io.BytesIO(upload), "image/png"),
            prompt="Add a hat",
        )

    assert len(result.data) == 1
    assert _submitted_input(replicate_fake, "xai/grok-imagine-image") == {
        "prompt": "Add a hat",
        "aspect_ratio": "1:1",  # ignored by the model when it edits, and one it takes
        "image": "data:image/png;base64," + base64.b64encode(upload).decode(),
    }


def test_the_four_models_are_listed_once_routed(client, replicate_fake, raw_key):
    response = client.get("/v1/models?category=image", HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    assert set(ROUTED_BY_0015) <= {m["id"] for m in response.json()["data"]}


# --- the seeded sizes ---------------------------------------------------------------------------


def test_z_image_turbo_has_one_exact_size_for_every_aspect_label():
    """Each label's own ratio exactly, both sides multiples of 16 and within 64..1440 (the first
    published version's limit; the later one allows 2048), about a megapixel."""
    [entry] = _seed_entries("z-image-turbo")["models"]
    sizes = [tuple(int(side) for side in size.split("x")) for size in entry["media"]["sizes"]]
    by_ratio = {}
    for width, height in sizes:
        assert width % 16 == height % 16 == 0 and 64 <= min(width, height) and max(width, height) <= 1440
        assert 0.75e6 <= width * height <= 1.05e6
        by_ratio[width / height] = (width, height)
    labels = [label for label in ASPECT_LABELS if label != "auto"]
    for label in labels:
        w, h = (int(part) for part in label.split(":"))
        assert any(math.isclose(w / h, ratio) for ratio in by_ratio), label
    assert len(sizes) == len(labels)


def test_wan_sizes_are_exactly_the_ones_replicate_lists():
    seed = {m["id"]: m["media"] for m in _seed_entries("wan2.7-image", "wan2.7-image-pro")["models"]}
    one_k = ["1024x1024", "1280x720", "720x1280", "1024x768", "768x1024"]
    two_k = ["2048x2048", "2048x1152", "1152x2048", "2048x1536", "1536x2048"]
    four_k = ["4096x4096", "4096x2304", "2304x4096", "4096x3072", "3072x4096"]

    assert seed["wan2.7-image"] == {"sizes": one_k + two_k, "max_n": 4, "size_form": "W*H"}
    assert seed["wan2.7-image-pro"] == {"sizes": one_k + two_k + four_k, "max_n": 4, "size_form": "W*H"}


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_options", "problem"),
    [
        ({"sizes": ["1024x1024"], "size_form": "WxH"}, "size_form must be one of: W*H, width_height."),
        ({"sizes": ["1:1", "16:9"], "size_form": "W*H"}, "sizes must list the pixel sizes it takes"),
        ({"sizes": ["1024x1024", "auto"], "size_form": "width_height"}, "sizes must list the pixel sizes it takes"),
        ({"size_form": "W*H"}, "sizes must list the pixel sizes it takes"),
    ],
)
def test_a_size_form_needs_a_known_form_and_pixel_sizes(db, media_options, problem):
    model = AIModel(
        slug="acme-img", name="Acme", vendor="Acme", category="image", per_image=1, media_options=media_options
    )

    with pytest.raises(ValidationError) as raised:
        model.clean()

    assert problem in raised.value.message_dict["media_options"][0]


def test_a_size_form_is_an_image_option(db):
    AIModel(
        slug="acme-img",
        name="Acme",
        vendor="Acme",
        category="image",
        media_options={"sizes": ["1280x720"], "size_form": "width_height"},
    ).clean()
    video = AIModel(slug="acme-vid", name="Acme", vendor="Acme", category="video", media_options={"size_form": "W*H"})

    with pytest.raises(ValidationError) as raised:
        video.clean()

    assert "Unknown for a video model: size_form" in raised.value.message_dict["media_options"][0]


def test_a_catalog_file_takes_size_form_as_a_media_key(db):
    entry = """
models:
  - id: acme-star
    name: Acme Star
    vendor: Acme
    category: image
    price: {per_image: 1000}
    media: {sizes: ["1280x720"], %s: "W*H"}
"""
    result = catalog_import(data=catalog_text_parse(text=entry % "size_form"), dry_run=True)

    assert result.dry_run
    with pytest.raises(CatalogFileError) as raised:
        catalog_import(data=catalog_text_parse(text=entry % "size_shape"), dry_run=True)
    assert any("size_shape" in error for error in raised.value.errors)


def test_a_catalog_file_checks_the_size_form_and_its_sizes(db):
    entry = """
models:
  - id: acme-star
    name: Acme Star
    vendor: Acme
    category: image
    price: {per_image: 1000}
    media: {sizes: %s, size_form: %s}
"""
    for sizes, form, problem in [
        ('["1280x720"]', '"WxH"', "size_form must be one of"),
        ('["16:9"]', '"W*H"', "sizes must list the pixel sizes"),
    ]:
        with pytest.raises(CatalogFileError) as raised:
            catalog_import(data=catalog_text_parse(text=entry % (sizes, form)), dry_run=True)
        assert any("models[0].media.size_form" in error and problem in error for error in raised.value.errors)


# --- migration 0015 -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_sized_routes_migration_routes_models_without_one_and_keeps_admin_edits():
    catalog_import(data=catalog_file_read(path=SEED_FILE))  # an earlier transactional test may have flushed it

    def routes() -> dict:
        rows = Route.objects.filter(model__slug__in=ROUTED_BY_0015).select_related("model", "upstream")
        return {r.model.slug: (r.upstream.name, r.upstream_model) for r in rows}

    def media(slug: str) -> dict:
        return AIModel.objects.get(slug=slug).media_options

    seeded = {slug: media(slug) for slug in ROUTED_BY_0015}
    call_command("migrate", "catalog", "0014", verbosity=0)
    # As an install migrated before 0015 has them: no route, the seed's earlier media options.
    assert routes() == {}
    assert media("wan2.7-image") == media("z-image-turbo") == EARLIER_MEDIA
    assert media("grok-imagine-1.0-edit-apimart")["max_n"] == 4
    # An admin's edits: Z-Image's media options, and a route of their own for Grok Imagine Edit.
    AIModel.objects.filter(slug="z-image-turbo").update(media_options={"sizes": ["1:1"], "max_n": 2})
    grok_edit = AIModel.objects.get(slug="grok-imagine-1.0-edit-apimart")
    Route.objects.create(model=grok_edit, upstream=Upstream.objects.get(name="openai"), upstream_model="by-admin")

    call_command("migrate", "catalog", verbosity=0)

    assert routes() == {
        "wan2.7-image": ("replicate", "wan-video/wan-2.7-image"),
        "wan2.7-image-pro": ("replicate", "wan-video/wan-2.7-image-pro"),
        # Z-Image keeps the admin's options, with which Replicate's model would refuse the size: no route.
        "grok-imagine-1.0-edit-apimart": ("openai", "by-admin"),
    }
    assert {slug: media(slug) for slug in ("wan2.7-image", "wan2.7-image-pro", "grok-imagine-1.0-edit-apimart")} == {
        slug: seeded[slug] for slug in ("wan2.7-image", "wan2.7-image-pro", "grok-imagine-1.0-edit-apimart")
    }
    assert media("z-image-turbo") == {"sizes": ["1:1"], "max_n": 2}

    call_command("migrate", "catalog", "0014", verbosity=0)

    assert routes() == {"grok-imagine-1.0-edit-apimart": ("openai", "by-admin")}
    assert media("wan2.7-image-pro") == EARLIER_MEDIA
    assert media("grok-imagine-1.0-edit-apimart") == {**EARLIER_MEDIA, "edits": True}
    assert media("z-image-turbo") == {"sizes": ["1:1"], "max_n": 2}
    # Without the replicate upstream: the media options change, no route is made.
    Upstream.objects.filter(name="replicate").delete()
    AIModel.objects.filter(slug="z-image-turbo").update(media_options=EARLIER_MEDIA)

    call_command("migrate", "catalog", verbosity=0)

    assert routes() == {"grok-imagine-1.0-edit-apimart": ("openai", "by-admin")}
    assert media("z-image-turbo") == seeded["z-image-turbo"]
    catalog_import(data=catalog_file_read(path=SEED_FILE))  # the seed's replicate upstream again, for later tests
