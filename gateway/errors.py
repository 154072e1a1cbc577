"""Domain errors and the one place that turns them into OpenAI-shaped responses.

`{"error": {"message", "type", "code", "param"}}` on every /v1 error, whatever
raised it: a validation failure, an upstream outage, an unknown path or a bug.
"""

from __future__ import annotations

import orjson
from django.http import HttpResponse


class ApiError(Exception):
    """An error a client should see, with the HTTP status and OpenAI error fields."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(ApiError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ApiError):
    status = 403
    type = "permission_error"


class PaymentRequired(ApiError):
    """The account's balance or the key's budget does not cover the call (OpenAI's quota error)."""

    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(ApiError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(ApiError):
    """The provider failed: unreachable, timed out, 5xx, or an unreadable answer."""

    status = 502
    type = "service_unavailable_error"
    code = "upstream_error"


class InternalError(ApiError):
    status = 500
    type = "internal_server_error"
    code = "internal_error"


def error_response(error: ApiError, *, protocol=None, render=None) -> HttpResponse:
    """The error as an HTTP response: OpenAI's shape, or `protocol.error_body`'s (a gateway.protocols
    module), or `render(error)`'s (status, body)."""
    if render is None:
        render = protocol.error_body if protocol is not None else (lambda e: (e.status, e.body()))
    status, body = render(error)
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    for name, value in error.headers.items():
        response[name] = value
    return response


def for_path(error: ApiError, path: str) -> ApiError:
    """The error as the API under `path` names it.

    /v1 follows OpenAI (a 404 is an `invalid_request_error`, code
    `model_not_found` and the like); /api/v1 follows its own reference's
    table, where a 404 is a `not_found_error`. Status, code and param are the same.
    """
    if error.status == 404 and path.startswith("/api/v1/") and error.type == "invalid_request_error":
        error.type = "not_found_error"
    return error


def drf_exception_handler(exc, context):
    """DRF views (catalog listing) answer errors in the same shape."""
    from rest_framework import exceptions as drf

    path = context["request"].path if context.get("request") is not None else ""
    if isinstance(exc, ApiError):
        return error_response(for_path(exc, path))
    if isinstance(exc, drf.NotFound):
        return error_response(for_path(NotFound(str(exc.detail)), path))
    if isinstance(exc, drf.MethodNotAllowed):
        return error_response(MethodNotAllowed(str(exc.detail)))
    if isinstance(exc, drf.APIException):
        return error_response(ApiError(str(exc.detail), status=exc.status_code))
    return None
