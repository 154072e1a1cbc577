"""The catalog as Google's `GET /v1beta/models` shows it, for Gemini clients.

Only models a Gemini client can call here are listed: the chat-type ones,
whatever their upstream (a Gemini client reaches Claude or GPT through
translation). Pages as Google pages: `pageSize` (default 50, at most 1000)
and an opaque `pageToken`.
"""

from __future__ import annotations

import base64

from catalog.models import CHAT_CATEGORIES, AIModel
from catalog.selectors import model_public_get, models_public
from gateway.errors import InvalidRequest
from gateway.protocols import gemini

METHODS = ["generateContent", "streamGenerateContent", "countTokens"]
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def _resource(row: AIModel) -> dict:
    return gemini.write_model(
        slug=row.slug,
        display_name=row.name,
        description=row.description,
        input_token_limit=row.context_window,
        output_token_limit=row.max_output_tokens,
        methods=METHODS,
    )


def _offset(page_token: str | None) -> int:
    if not page_token:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(page_token.encode()).decode()))
    except ValueError:
        raise InvalidRequest("Invalid pageToken.", param="pageToken") from None


def gemini_models_page(*, page_size: str | None, page_token: str | None) -> dict:
    try:
        size = int(page_size) if page_size else 0
    except ValueError:
        raise InvalidRequest("Invalid pageSize: expected an integer.", param="pageSize") from None
    if size < 0:
        raise InvalidRequest("Invalid pageSize: must not be negative.", param="pageSize")
    size = min(size, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE  # 0 or absent: the default, as Google's lists do
    start = _offset(page_token)
    rows = list(
        models_public().filter(category__in=CHAT_CATEGORIES).order_by("vendor", "slug")[start : start + size + 1]
    )
    next_token = base64.urlsafe_b64encode(str(start + size).encode()).decode() if len(rows) > size else None
    return gemini.write_model_list([_resource(row) for row in rows[:size]], next_token)


def gemini_model_get(*, slug: str) -> dict | None:
    row = model_public_get(slug=slug.removeprefix("models/"))
    if row is None or row.category not in CHAT_CATEGORIES:
        return None
    return _resource(row)
