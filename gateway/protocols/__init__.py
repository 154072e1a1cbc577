"""The wire protocols Beluga speaks, one module each, all through one representation.

`conversation.py` holds that representation (Conversation, Reply, stream
events). Each protocol module offers the functions below; a protocol that is
only served (the Responses API) has no upstream side, and one that is only
called has no client side.

Client side (what a customer's SDK sends Beluga and reads back):

    read_request(body: object, *, model: str | None = None, stream: bool | None = None) -> Conversation
        Validate and read the request body (model/stream given when the URL
        carries them, as Gemini's does). Raises gateway.errors.InvalidRequest
        naming the parameter for any bad input.
    write_reply(reply: Reply, *, model: str, request_id: str, conversation: Conversation | None = None) -> dict
        The protocol's whole-answer JSON, under the public model id (the
        request's Conversation, for protocols that echo request settings).
    StreamWriter(*, model: str, request_id: str, conversation: Conversation)
        .content_type: str
        .write(event: StreamEvent) -> bytes   zero or more framed client events
        .close(*, error: str | None = None) -> bytes
            the closing events once the upstream stream ended (error: the
            upstream broke off; write the protocol's in-stream error event)
    error_body(error: ApiError) -> tuple[int, dict]
        Status and body of an error in the protocol's own shape.

Upstream side (what Beluga sends a provider of this kind and reads back):

    build_request(conversation: Conversation, *, route: RouteTarget, stream: bool) -> UpstreamRequest
        URL, headers (the route's credential, never the customer's key) and
        body; `dropped` names parameters the provider cannot honour. Raises
        InvalidRequest when dropping one would change the meaning.
    read_reply(data: object) -> Reply
        Raises ValueError when the answer is not one.
    StreamReader()
        .feed(data: bytes) -> list[StreamEvent]   one upstream SSE `data:` payload
        .ended: bool        the stream's own end marker was seen
        .error: str | None  the provider reported an error inside the stream
        .usage_so_far: Usage | None  (optional) usage reported before the end, e.g.
            the input count at the start: bills the input of a stream cut short
    read_error(*, route: RouteTarget, status: int, content: bytes, headers) -> ApiError
        What the client should see for a provider's non-200 answer (never
        the provider's credential).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    dropped: list[str] = field(default_factory=list)


def with_route_params(params: dict, body: dict) -> dict:
    """`body` with a route's `params` merged in: nested objects merge, the route's values win.

    A route states what its public model means in the upstream's own protocol
    (thinking on for a '-thinking' model, off for a '-nothinking' one), so a
    client's own value for the same field gives way.
    """
    merged = dict(body)
    for key, value in params.items():
        current = merged.get(key)
        both_objects = isinstance(current, dict) and isinstance(value, dict)
        merged[key] = with_route_params(value, current) if both_objects else value
    return merged


def request_with_route_params(request: UpstreamRequest, params: dict) -> UpstreamRequest:
    if params:
        request.body = orjson.dumps(with_route_params(params, orjson.loads(request.body)))
    return request
