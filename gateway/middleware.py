"""Request ids on every response, OpenAI-shaped errors on every API path, and each API request counted
for /metrics (gateway/metrics.py)."""

from __future__ import annotations

import logging
import re
import secrets
import time

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import Http404

from gateway import metrics
from gateway.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    error_response,
    for_path,
)

logger = logging.getLogger("beluga.gateway")

API_PREFIXES = ("/v1/", "/api/v1/", "/v1beta/", "/api/v1beta/")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in ("/v1", "/api/v1", "/v1beta", "/api/v1beta")


def api_error_response(request, error: ApiError):
    """The error in the shape the client of the request's path reads: Gemini's, Anthropic's or OpenAI's."""
    from gateway.protocols import anthropic_messages, gemini

    path = request.path
    if path.startswith(("/v1beta/", "/api/v1beta/")):
        return error_response(error, protocol=gemini)
    if path.rstrip("/").endswith(("/v1/messages", "/v1/messages/count_tokens")):
        request_id = getattr(request, "request_id", None)
        return error_response(error, render=lambda e: anthropic_messages.error_body(e, request_id=request_id))
    return error_response(for_path(error, path))


def _is_json(response) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


def _error_for_status(status: int) -> ApiError:
    if status == 404:
        return NotFound("Not found.")
    if status == 413:
        return PayloadTooLarge("Request body is too large.")
    if status >= 500:
        return InternalError("The server had an error processing your request.", status=status)
    if status == 403:
        return PermissionDenied("This request is not allowed.", code="forbidden")
    return ApiError("The request could not be processed.", status=status, code="bad_request")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def _rate_limit_headers_add(request, response) -> None:
    """The key's window, on answers to calls that were authenticated but not counted (pipeline.authenticate)."""
    peek = getattr(request, "rate_limit_peek", None)
    if peek is None:
        return
    try:
        state = peek()
    except Exception:  # noqa: BLE001 - headers are informative; the answer itself must still go out
        logger.warning("could not read the rate-limit window for %s", request.request_id, exc_info=True)
        return
    for name, value in state.headers().items():
        response[name] = value


class RequestIdMiddleware:
    """Gives each request an id (a client's own X-Request-Id is kept when sane).

    Sits first in MIDDLEWARE so that whatever happens below, API errors leave
    as OpenAI JSON and every response names its request.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request.request_id = incoming if _CLIENT_ID.match(incoming) else new_request_id()
        try:
            response = self.get_response(request)
        except Exception as exc:  # the handler below normally converts; this is the last net
            response = self._api_error(request, exc)
            if response is None:
                raise
        api = is_api_path(request.path)
        if response.status_code >= 400 and api and not _is_json(response):
            # An error Django answered itself (a disallowed Host, a CSRF or security check):
            # same status, in the API's own error shape.
            response = api_error_response(request, _error_for_status(response.status_code))
        response["X-Request-Id"] = request.request_id
        if api:
            if "X-RateLimit-Limit-Requests" not in response:
                _rate_limit_headers_add(request, response)
            match = request.resolver_match  # None when no URL pattern matched
            metrics.request_observed(
                endpoint=(match.url_name if match else None) or "other",
                method=request.method,
                status=response.status_code,
                seconds=time.perf_counter() - started,
            )
        return response

    def process_exception(self, request, exc):
        return self._api_error(request, exc)

    def _api_error(self, request, exc):
        if not is_api_path(request.path):
            return None
        if isinstance(exc, ApiError):
            return api_error_response(request, exc)
        if isinstance(exc, orjson.JSONEncodeError):
            # orjson writes at most 255 levels of nesting (it reads 1,024): a body it read may not go back out.
            message = "The request's JSON is nested too deeply (255 levels at most)."
            nested = InvalidRequest(message, code="invalid_json")
            return api_error_response(request, nested)
        if isinstance(exc, RequestDataTooBig):
            return api_error_response(request, PayloadTooLarge("Request body is too large."))
        if isinstance(exc, Http404):
            return api_error_response(request, NotFound(f"Unknown path {request.path}.", code="not_found"))
        logger.exception("unhandled error on %s (request %s)", request.path, request.request_id)
        return api_error_response(request, InternalError("The server had an error processing your request."))
