"""The application gunicorn serves: API calls take the short middleware chain, pages the full one."""

import io
import sys

import orjson
import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from gateway.wsgi import application


def call(path, method="GET", body=b"", headers=None):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "wsgi.url_scheme": "http",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.errors": sys.stderr,
        **(headers or {}),
    }
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(response_headers)

    # As Django's test client does: the request's end must not close the test's own connection,
    # which is inside the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        result = application(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            result.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return seen["status"], seen["headers"], content


@pytest.mark.django_db
def test_api_calls_skip_the_browser_middleware_and_pages_keep_it():
    _, api_headers, _ = call("/v1/health")
    _, page_headers, _ = call("/login/")
    # Clickjacking and CSRF/session middleware leave these marks on pages only.
    assert "X-Frame-Options" in page_headers and "Cookie" in page_headers.get("Vary", "")
    assert "X-Frame-Options" not in api_headers and "Vary" not in api_headers
    assert api_headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware runs on both


@pytest.mark.django_db
def test_api_errors_keep_their_shape_and_request_id_on_the_short_chain():
    status, headers, content = call("/v1/chat/completions", "POST", b"{}", {"HTTP_AUTHORIZATION": "Bearer nope"})
    assert status == 401
    assert headers["X-Request-Id"].startswith("req_")
    assert orjson.loads(content)["error"]["code"] == "invalid_api_key"
    status, headers, content = call("/v1/does-not-exist")
    assert status == 404 and "X-Request-Id" in headers
    assert orjson.loads(content)["error"]["type"] == "invalid_request_error"


@pytest.mark.django_db
def test_pages_still_get_sessions_and_csrf():
    status, headers, content = call("/login/")
    assert status == 200
    assert b"csrfmiddlewaretoken" in content
    assert "X-Request-Id" in headers


@pytest.mark.django_db
def test_an_error_django_answers_itself_keeps_the_api_shape():
    """A Host outside ALLOWED_HOSTS is refused by Django's middleware with an HTML 400."""
    status, headers, content = call("/v1/models", headers={"HTTP_HOST": "evil.example"})
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert orjson.loads(content)["error"]["type"] == "invalid_request_error"
    assert "X-Request-Id" in headers
    status, headers, content = call("/login/", headers={"HTTP_HOST": "evil.example"})
    assert status == 400 and not headers["Content-Type"].startswith("application/json")  # pages keep HTML
