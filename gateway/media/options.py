"""Checking a media request's options against what its model accepts (AIModel.media_options).

Sizes come as aspect labels (`16:9`) or pixel sizes (`1024x1024`), whichever
the client knows; each model accepts its own list, in the form its upstream
takes. A size the model lacks is converted to the nearest it has (closest
aspect ratio, then closest area, then the first listed); anything else is a 400
naming the parameter and listing what the model accepts. A prediction upstream
that wants pixels written its own way (`size_form`) gets the chosen size in
that form (size_inputs).
"""

from __future__ import annotations

import math
import re

from django.conf import settings

from catalog.selectors import ModelInfo
from gateway.errors import ApiError, InvalidRequest, PayloadTooLarge

ASPECT_LABELS = (
    "1:1",
    "16:9",
    "9:16",
    "4:3",
    "3:4",
    "3:2",
    "2:3",
    "5:4",
    "4:5",
    "2:1",
    "1:2",
    "21:9",
    "9:21",
    "auto",
)
# What a model without a list of its own accepts: every aspect label.
DEFAULT_SIZES = ASPECT_LABELS[:-1]
DEFAULT_SIZE = "1:1"
DEFAULT_MAX_IMAGES = 4
MAX_IMAGES = 4  # spec 003: at most 4 images per request, whatever the model
MAX_PROMPT_CHARS = 4000
_PIXELS = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")


def _ratio_and_area(size: str) -> tuple[float, float] | None:
    """An aspect label's or pixel size's width/height ratio (and area, 0 for labels)."""
    if size in ASPECT_LABELS and size != "auto":
        width, height = (int(part) for part in size.split(":"))
        return width / height, 0.0
    match = _PIXELS.match(size)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        return width / height, float(width * height)
    return None


def _accepted_text(accepted: list[str]) -> str:
    return ", ".join(accepted)


def size_for(model: ModelInfo, value, *, param: str = "size", default: str = DEFAULT_SIZE) -> str:
    """The size to send upstream for the client's `value` (None: the default, 1:1)."""
    accepted = [str(s) for s in (model.media_options.get("sizes") or DEFAULT_SIZES)]
    if value is None or value == "":
        value = default
    if not isinstance(value, str):
        raise InvalidRequest(f"Invalid '{param}': expected a string such as 1:1 or 1024x1024.", param=param)
    value = value.strip().lower()
    if value in accepted:
        return value
    if value == "auto":
        return accepted[0]  # the model's own default
    wanted = _ratio_and_area(value)
    if wanted is None:
        raise InvalidRequest(
            f"Invalid '{param}': '{value}'. Use an aspect ratio ({_accepted_text(list(ASPECT_LABELS))}) or a pixel "
            f"size such as 1024x1024; '{model.slug}' accepts {_accepted_text(accepted)} (others are converted to "
            "the nearest).",
            param=param,
            code="invalid_size",
        )
    ratio, area = wanted
    candidates = [(size, _ratio_and_area(size)) for size in accepted]
    candidates = [(size, found) for size, found in candidates if found is not None]
    if not candidates:
        return accepted[0]

    def distance(item):
        candidate_ratio, candidate_area = item[1]
        area_gap = abs(math.log(candidate_area / area)) if area and candidate_area else 0.0
        return (round(abs(math.log(candidate_ratio / ratio)), 6), area_gap)

    return min(candidates, key=distance)[0]


def choice_for(model: ModelInfo, value, *, param: str, option: str, default_accepted: tuple[str, ...] = ()) -> str:
    """A value among the model's `option` list (media_options[option]); "" when not given."""
    if value is None or value == "":
        return ""
    accepted = [str(v) for v in (model.media_options.get(option) or default_accepted)]
    if not isinstance(value, str) or value not in accepted:
        listed = _accepted_text(accepted) if accepted else "none (leave it out)"
        raise InvalidRequest(
            f"Invalid '{param}': {value!r}. '{model.slug}' accepts: {listed}.", param=param, code=f"invalid_{param}"
        )
    return value


def integer_in(value, *, param: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise InvalidRequest(f"Invalid '{param}': expected an integer from {low} to {high}.", param=param)
    if not low <= value <= high:
        raise InvalidRequest(f"Invalid '{param}': {value} is not between {low} and {high}.", param=param)
    return value


def images_max(model: ModelInfo) -> int:
    configured = model.media_options.get("max_n")
    if isinstance(configured, int) and not isinstance(configured, bool) and configured > 0:
        return min(configured, MAX_IMAGES)
    return DEFAULT_MAX_IMAGES


def prompt_of(body: dict, *, limit: int = MAX_PROMPT_CHARS, param: str = "prompt", required: bool = True) -> str:
    prompt = body.get(param)
    if prompt is None and not required:
        return ""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest(
            f"Missing required parameter: '{param}'." if prompt is None else f"Invalid '{param}': expected text.",
            param=param,
            code="missing_required_parameter" if prompt is None else None,
        )
    if len(prompt) > limit:
        raise InvalidRequest(
            f"Invalid '{param}': {len(prompt)} characters, at most {limit} are allowed.",
            param=param,
            code="string_above_max_length",
        )
    return prompt


def upload_size_check(request) -> None:
    """Refuse a multipart body over MAX_REQUEST_BODY_BYTES before it is read (Django spools files
    to disk without a total limit); a chunked body without a length is refused too."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        length = None
    if length is None:
        raise ApiError("Send the upload with a Content-Length header.", status=411, code="length_required")
    if length > settings.MAX_REQUEST_BODY_BYTES:
        raise PayloadTooLarge(
            f"Request body is larger than {settings.MAX_REQUEST_BODY_BYTES} bytes.", code="request_too_large"
        )


def input_name(model: ModelInfo, name: str) -> str:
    """The upstream's input name for one of Beluga's (media_options.input_names), e.g. n → max_images."""
    names = model.media_options.get("input_names") or {}
    renamed = names.get(name) if isinstance(names, dict) else None
    return renamed if isinstance(renamed, str) and renamed else name


def size_inputs(model: ModelInfo, size: str) -> dict:
    """A prediction's inputs for a size that size_for chose, in the form the upstream takes.

    By default an aspect label is sent as `aspect_ratio` and a pixel size as `size` ("1280x720").
    With media_options["size_form"] (catalog.models.SIZE_FORMS; the model's sizes are then pixel
    sizes): "W*H" sends `size` "1280*720", "width_height" the integers `width` 1280 and `height` 720.
    Each name may be renamed by input_names."""
    if not size:
        return {}
    form = model.media_options.get("size_form")
    pixels = _PIXELS.match(size)
    if pixels and form == "W*H":
        return {input_name(model, "size"): f"{pixels.group(1)}*{pixels.group(2)}"}
    if pixels and form == "width_height":
        return {input_name(model, "width"): int(pixels.group(1)), input_name(model, "height"): int(pixels.group(2))}
    return {input_name(model, "size" if "x" in size else "aspect_ratio"): size}
