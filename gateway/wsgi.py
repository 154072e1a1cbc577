"""The WSGI application gunicorn serves.

API calls (/v1/..., /api/v1/...) go through a handler with only the middleware
they need (request ids and OpenAI-shaped errors, security headers, common
URL handling); the browser pages keep the whole stack (sessions, CSRF, auth,
messages). Skipping the browser middleware saves CPU on every proxied call.
An API answer whose close() writes the call's usage record is closed on a
small thread pool, off the connection (gateway/after_response.py).
"""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")


class ApiWSGIHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        from django.conf import settings

        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE  # only while this handler builds its chain, at startup
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


class BelugaApplication:
    def __init__(self) -> None:
        self.site = get_wsgi_application()  # also runs django.setup()
        self.api = ApiWSGIHandler()
        from django.conf import settings

        from gateway.after_response import AfterResponse
        from gateway.middleware import API_PREFIXES

        self.api_prefixes = API_PREFIXES
        self.after_response = AfterResponse(threads=settings.BELUGA["RECORD_THREADS"])

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(self.api_prefixes):
            return self.after_response.wrap(self.api(environ, start_response))
        return self.site(environ, start_response)


application = BelugaApplication()
