"""The WSGI application gunicorn serves.

API calls (/v1/..., /api/v1/...) go through a handler with only the middleware
they need (request ids and OpenAI-shaped errors, security headers, common
URL handling); the browser pages keep the whole stack (sessions, CSRF, auth,
messages). Skipping the browser middleware saves CPU on every proxied call.
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
        from gateway.middleware import API_PREFIXES

        self.api_prefixes = API_PREFIXES

    def __call__(self, environ, start_response):
        handler = self.api if environ.get("PATH_INFO", "").startswith(self.api_prefixes) else self.site
        return handler(environ, start_response)


application = BelugaApplication()
