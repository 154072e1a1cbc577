"""Beluga's settings: the one module that reads the environment.

Every variable is documented in README.md and .env.example. Defaults are safe
for development and embedded (SQLite, database cache, filesystem Celery
broker); production sets DEBUG=0, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL and
REDIS_URL.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_secret(name: str) -> str:
    """A provider credential: the value of the variable, or '' when unset.

    Upstream rows may say `env:VAR`; they resolve through this function so that
    nothing else in the code base touches os.environ.
    """
    return os.environ.get(name, "")


# Exposed as a setting so that catalog code resolves `env:VAR` credentials
# without reading os.environ itself.
READ_ENV_SECRET = env_secret

DATA_DIR = Path(env_str("BELUGA_DATA_DIR", str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off (set DEBUG=1 for development)")
    # Development: generate once and keep it in a local file so sessions survive restarts.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_ratelimit",
    "accounts",
    "catalog",
    "billing",
    "gateway",
]

MIDDLEWARE = [
    # First: every response, errors included, gets X-Request-Id, and /v1 errors
    # raised anywhere below become OpenAI-shaped.
    "gateway.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# API calls skip the browser middleware (see gateway/wsgi.py).
API_MIDDLEWARE = [
    "gateway.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "gateway.urls"
WSGI_APPLICATION = "gateway.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite file by default, PostgreSQL (psycopg 3) when DATABASE_URL says so.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'beluga.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL)
if _db["ENGINE"] == "django.db.backends.postgresql":
    # A small pool per process: gthread workers run hundreds of threads (one per
    # open stream), far more than PostgreSQL allows connections. The pipeline
    # gives its connection back before the upstream call, so a held stream
    # holds no connection.
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN", 2),
        "max_size": env_int("DATABASE_POOL_MAX", 16),
        "timeout": env_int("DATABASE_POOL_TIMEOUT", 10),
    }
    _db["CONN_MAX_AGE"] = 0
    _db["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", "") or None}
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process and the Celery worker share the file.
    _db.setdefault("OPTIONS", {})["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    _db["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    _db["OPTIONS"]["timeout"] = 20
    # Tests on a file, as the product runs: an in-memory test database is one connection shared by
    # every thread, which the live server's threads (recording after the response) cannot share.
    _db["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", "") or str(DATA_DIR / "test.sqlite3")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when REDIS_URL is set (shared by every instance), else the
# database cache (shared by every process on this machine's database).
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "gateway.cache.ReusedClientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "beluga"),
        },
        # django-ratelimit's per-key request counters, counted in one round trip (gateway/cache.py).
        "ratelimit": {
            "BACKEND": "gateway.cache.RequestCounterRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "beluga"),
        },
    }
    RATELIMIT_USE_CACHE = "ratelimit"
else:
    CACHES = {
        "default": {
            "BACKEND": "gateway.cache.AtomicDatabaseCache",
            "LOCATION": "beluga_cache",
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "beluga"),
        }
    }
    RATELIMIT_USE_CACHE = "default"
# A counter lost mid-window (a cache restart or flush) must not turn into 429s for everyone.
RATELIMIT_FAIL_OPEN = True
# django-ratelimit only knows stock backends; gateway.cache.AtomicDatabaseCache
# makes the embedded one's increment atomic (see its docstring).
# Django's own RedisCache increments atomically but is not on its list either.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"] + ([] if REDIS_URL else ["django_ratelimit.E003"])

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Generated media (images, videos, audio a task produced) are kept by Beluga and
# served from its own signed, expiring URLs (gateway/media/storage.py): on the
# local filesystem by default, in an S3-compatible bucket (django-storages)
# when MEDIA_S3_BUCKET is set. Several instances need the bucket (or a shared
# MEDIA_ROOT): a file written by a Celery worker is served by any web process.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
MEDIA_S3_BUCKET = env_str("MEDIA_S3_BUCKET")
if MEDIA_S3_BUCKET:
    _media_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": MEDIA_S3_BUCKET,
            "endpoint_url": env_str("MEDIA_S3_ENDPOINT_URL") or None,
            "region_name": env_str("MEDIA_S3_REGION") or None,
            "access_key": env_secret("MEDIA_S3_ACCESS_KEY_ID") or None,
            "secret_key": env_secret("MEDIA_S3_SECRET_ACCESS_KEY") or None,
            # No ACL sent: buckets with ACLs disabled (AWS's default) refuse any other than the
            # owner's, and objects stay private either way; links are presigned.
            # Beluga's own links redirect to presigned URLs of the bucket, made per request with a
            # one-minute life (gateway/media/storage.py); the objects themselves stay private.
            "querystring_auth": True,
            "querystring_expire": 60,
            # SigV4: botocore presigns with the retired SigV2 in older regions (us-east-1...) unless told.
            "signature_version": "s3v4",
            "file_overwrite": False,
        },
    }
else:
    _media_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": MEDIA_ROOT}}
STORAGES = {
    "default": _media_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Request bodies: images arrive base64 in chat messages, so allow large bodies,
# but answer 413 past the limit.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# Security: production settings pass `manage.py check --deploy`.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO") else None
# HTTPS_ONLY=1 is the one switch for a site served over TLS; the three below refine it.
HTTPS_ONLY = env_bool("HTTPS_ONLY", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS_ONLY)
# Load balancers probe, and Prometheus scrapes from the internal network, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^(api/)?v1/health$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", HTTPS_ONLY)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS_ONLY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "gateway.errors.drf_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Celery: Redis when REDIS_URL is set, else the filesystem transport so a real
# worker runs with no external service.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
_celery_fs = DATA_DIR / "celery"
if CELERY_BROKER_URL == "filesystem://":
    for sub in ("in", "processed", "control"):
        (_celery_fs / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_fs / "in"),
        "data_folder_out": str(_celery_fs / "in"),
        "processed_folder": str(_celery_fs / "processed"),
        "control_folder": str(_celery_fs / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or (REDIS_URL or f"file://{_celery_fs / 'results'}")
if CELERY_RESULT_BACKEND.startswith("file://"):
    (_celery_fs / "results").mkdir(parents=True, exist_ok=True)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 270)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Periodic tasks, sent by `celery -A gateway beat` (exactly one per deployment; `make run`
# starts it). A run not picked up before the next one is due is dropped (`expires`), and
# beat's runs store no result.
HEALTH_PROBE_SECONDS = env_int("BELUGA_HEALTH_PROBE_SECONDS", 60)
CELERY_BEAT_SCHEDULE = {
    "billing-reservations-sweep": {
        "task": "billing.tasks.reservations_sweep_task",
        "schedule": 60.0,
        "options": {"expires": 55, "ignore_result": True},
    },
    "billing-spend-alerts": {
        "task": "billing.tasks.spend_alerts_task",
        "schedule": 300.0,
        "options": {"expires": 290, "ignore_result": True},
    },
    "gateway-media-tasks-resume": {
        "task": "gateway.tasks.media_tasks_resume_task",
        "schedule": 60.0,
        "options": {"expires": 55, "ignore_result": True},
    },
    "gateway-media-files-purge": {
        "task": "gateway.tasks.media_files_purge_task",
        "schedule": 3600.0,
        "options": {"expires": 3500, "ignore_result": True},
    },
    "gateway-idempotency-keys-purge": {
        "task": "gateway.tasks.idempotency_keys_purge_task",
        "schedule": 3600.0,
        "options": {"expires": 3500, "ignore_result": True},
    },
}
if HEALTH_PROBE_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["gateway-upstream-probes"] = {
        "task": "gateway.tasks.upstream_probes_task",
        "schedule": float(HEALTH_PROBE_SECONDS),
        "options": {"expires": max(1, HEALTH_PROBE_SECONDS - 5), "ignore_result": True},
    }

# Email (spend alerts): the console in development, SMTP otherwise.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Beluga <beluga@localhost>")

# Beluga itself.
BELUGA = {
    # Seconds a process keeps its snapshot of the catalog (models, routes,
    # upstreams) before reading it again: admin edits reach every instance
    # within this time.
    "CATALOG_CACHE_SECONDS": env_int("BELUGA_CATALOG_CACHE_SECONDS", 5),
    # Seconds an authenticated key stays in the shared cache. Revocation marks
    # the entry stale at once, so this bounds nothing but memory.
    "KEY_CACHE_SECONDS": env_int("BELUGA_KEY_CACHE_SECONDS", 300),
    # Routing and resilience (docs/routing.md). A call tries at most MAX_ATTEMPTS
    # upstreams (its model's, then its fallbacks') within REQUEST_DEADLINE_SECONDS;
    # retries stay within RETRY_BUDGET_RATIO of a process's calls over the last
    # minute, plus RETRY_BUDGET_MIN a minute.
    "MAX_ATTEMPTS": env_int("BELUGA_MAX_ATTEMPTS", 3),
    "REQUEST_DEADLINE_SECONDS": env_float("BELUGA_REQUEST_DEADLINE_SECONDS", 900.0),
    "RETRY_BUDGET_RATIO": env_float("BELUGA_RETRY_BUDGET_RATIO", 0.2),
    "RETRY_BUDGET_MIN": env_int("BELUGA_RETRY_BUDGET_MIN", 10),
    # Circuit breakers, per upstream and per upstream + model, shared through the cache:
    # open when at least BREAKER_MIN_CALLS calls in the last BREAKER_WINDOW_SECONDS
    # failed in a ratio of BREAKER_FAILURE_RATIO or more; after BREAKER_COOLDOWN_SECONDS
    # one probe call goes through (half-open) and closes it on success. Each
    # process re-reads the shared states every BREAKER_REFRESH_SECONDS.
    "BREAKER_WINDOW_SECONDS": env_int("BELUGA_BREAKER_WINDOW_SECONDS", 60),
    "BREAKER_MIN_CALLS": env_int("BELUGA_BREAKER_MIN_CALLS", 5),
    "BREAKER_FAILURE_RATIO": env_float("BELUGA_BREAKER_FAILURE_RATIO", 0.5),
    "BREAKER_COOLDOWN_SECONDS": env_float("BELUGA_BREAKER_COOLDOWN_SECONDS", 30.0),
    "BREAKER_REFRESH_SECONDS": env_float("BELUGA_BREAKER_REFRESH_SECONDS", 1.0),
    # Active health probes of idle upstreams that ask for them (Upstream.health_probe), by
    # Celery beat every this many seconds (0: never).
    "HEALTH_PROBE_SECONDS": HEALTH_PROBE_SECONDS,
    # Threads per process that close answers after their last byte, writing the
    # call's usage record and settling its hold off the client's connection
    # (0: in the request's own thread). When all are busy, the request's thread
    # writes its own record, as with 0.
    "RECORD_THREADS": env_int("BELUGA_RECORD_THREADS", 2),
    # Pooled keep-alive connections per upstream per worker process.
    "UPSTREAM_POOL_SIZE": env_int("BELUGA_UPSTREAM_POOL_SIZE", 512),
    # The local simulator that serves the demo model when no provider key is set.
    "SIMULATOR_URL": env_str("BELUGA_SIMULATOR_URL", "http://127.0.0.1:8001/v1"),
    "CATALOG_FILE": env_str("BELUGA_CATALOG_FILE"),
    # The demo admin's password for `make run` (generated and printed once when empty).
    "ADMIN_PASSWORD": env_str("BELUGA_ADMIN_PASSWORD"),
    # Images given by URL to a provider that needs the bytes (Gemini) are
    # fetched by Beluga: http(s) only, public addresses only (checked after
    # DNS resolution) unless this is on, within a size and a time limit.
    "IMAGE_FETCH_ALLOW_PRIVATE": env_bool("BELUGA_IMAGE_FETCH_ALLOW_PRIVATE", False),
    "IMAGE_FETCH_MAX_BYTES": env_int("BELUGA_IMAGE_FETCH_MAX_BYTES", 20 * 1024 * 1024),
    "IMAGE_FETCH_TIMEOUT_SECONDS": env_int("BELUGA_IMAGE_FETCH_TIMEOUT_SECONDS", 10),
    # Money held before a call on a prepaid account (or a key with a budget) is
    # the most the call can cost: its input estimated from the request (a
    # token per character of text, plus this much per image) and its output
    # cap (the request's max tokens, else the model's output limit, else this).
    "RESERVE_TOKENS_PER_IMAGE": env_int("BELUGA_RESERVE_TOKENS_PER_IMAGE", 2000),
    "RESERVE_DEFAULT_OUTPUT_TOKENS": env_int("BELUGA_RESERVE_DEFAULT_OUTPUT_TOKENS", 32768),
    # A hold still open this long after its call started belongs to a worker
    # that died: the sweeper (a periodic Celery task) gives it back.
    "RESERVATION_TIMEOUT_SECONDS": env_int("BELUGA_RESERVATION_TIMEOUT_SECONDS", 3600),
    # How long an Idempotency-Key is remembered per account (Stripe: 24 h).
    "IDEMPOTENCY_TTL_SECONDS": env_int("BELUGA_IDEMPOTENCY_TTL_SECONDS", 86400),
    # Media. Links to generated files are signed and expire after this long
    # (a new link comes with every read of the task).
    "MEDIA_URL_TTL_SECONDS": env_int("BELUGA_MEDIA_URL_TTL_SECONDS", 86400),
    # Results Beluga downloads from an upstream (its job's output URLs): size and time limits.
    "MEDIA_FETCH_MAX_BYTES": env_int("BELUGA_MEDIA_FETCH_MAX_BYTES", 50 * 1024 * 1024),
    "VIDEO_FETCH_MAX_BYTES": env_int("BELUGA_VIDEO_FETCH_MAX_BYTES", 1024 * 1024 * 1024),
    "MEDIA_FETCH_TIMEOUT_SECONDS": env_int("BELUGA_MEDIA_FETCH_TIMEOUT_SECONDS", 120),
    "VIDEO_FETCH_TIMEOUT_SECONDS": env_int("BELUGA_VIDEO_FETCH_TIMEOUT_SECONDS", 900),
    # Where this deployment is reached (https://api.example.com), for media links made without a
    # request at hand; links in API answers use the request's own host.
    "PUBLIC_BASE_URL": env_str("BELUGA_PUBLIC_BASE_URL").rstrip("/"),
    # POST /v1/images/generations waits this long for an async upstream's job,
    # then answers 504 with the task id (the job goes on; GET /v1/images/tasks/{id}).
    "IMAGE_WAIT_SECONDS": env_int("BELUGA_IMAGE_WAIT_SECONDS", 120),
    # An upstream job still unfinished this long after it was submitted has failed.
    "IMAGE_JOB_DEADLINE_SECONDS": env_int("BELUGA_IMAGE_JOB_DEADLINE_SECONDS", 900),
    "VIDEO_JOB_DEADLINE_SECONDS": env_int("BELUGA_VIDEO_JOB_DEADLINE_SECONDS", 3600),
    # Polling an upstream job: the first wait, then doubling up to the longest.
    "JOB_POLL_FIRST_SECONDS": env_float("BELUGA_JOB_POLL_FIRST_SECONDS", 1.0),
    "JOB_POLL_MAX_SECONDS": env_float("BELUGA_JOB_POLL_MAX_SECONDS", 15.0),
    # Generated files are deleted this many days after their task ended (0: kept until deleted);
    # the task and its usage record stay.
    "MEDIA_RETENTION_DAYS": env_int("BELUGA_MEDIA_RETENTION_DAYS", 0),
    # Media tasks go to this Celery queue (empty: the default one), so that polling can have
    # workers of its own; a worker holds a task this long per step before another may take it.
    "MEDIA_TASK_QUEUE": env_str("BELUGA_MEDIA_TASK_QUEUE"),
    "MEDIA_TASK_LEASE_SECONDS": env_int("BELUGA_MEDIA_TASK_LEASE_SECONDS", 120),
    # Audio uploads for transcription: bigger ones are refused before they are read.
    "TRANSCRIPTION_MAX_BYTES": env_int("BELUGA_TRANSCRIPTION_MAX_BYTES", 25 * 1024 * 1024),
    # GET /metrics (Prometheus) answers a request carrying this as a bearer token (empty: no token
    # works), or one made directly (no proxy headers) from these networks (empty: none).
    "METRICS_TOKEN": env_secret("BELUGA_METRICS_TOKEN"),
    "METRICS_ALLOW_NETWORKS": env_list("BELUGA_METRICS_ALLOW_NETWORKS", "127.0.0.1/32,::1/128"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
    },
}
