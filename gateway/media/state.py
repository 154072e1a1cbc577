"""An upstream job's state in Beluga's terms: what each provider adapter reads its job into."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson


def json_object(content: bytes) -> dict:
    """An upstream answer that must be a JSON object; UpstreamError (502) otherwise."""
    from gateway.errors import UpstreamError

    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamError("The model provider sent an unreadable answer.", status=502)
    return value


@dataclass
class JobState:
    status: str  # a gateway.models.MediaTask.Status value
    progress: int = 0
    job_id: str = ""
    poll_url: str = ""
    outputs: list = field(default_factory=list)  # result URLs (str) or fetched files, in order
    error_code: str = ""
    error_message: str = ""
    units: int | None = None  # what the upstream says it made (images, seconds), when it says
    unit_price: int | None = None  # the price the answer settled (the quality an `auto` request got)
