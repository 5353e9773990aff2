"""Django settings for sdrbot: every value comes from the environment (django-environ), read here and only here.

The table of variables is in README.md; `.env.example` lists them with their defaults. With ``DATABASE_URL`` or
``REDIS_URL`` unset, the embedded servers of :mod:`sdrbot.devservices` are used (``make services`` starts them).
"""

from __future__ import annotations

from pathlib import Path

import environ

from sdrbot import devservices

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)  # optional; real deployments set the environment

DEBUG = env.bool("DEBUG", default=False)
SDRBOT_ENV = env.str("SDRBOT_ENV", default="development")
_INSECURE_DEV_KEY = "sdrbot-insecure-development-key-never-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_INSECURE_DEV_KEY)
if SECRET_KEY == _INSECURE_DEV_KEY and SDRBOT_ENV == "production":
    raise environ.ImproperlyConfigured("SECRET_KEY must be set when SDRBOT_ENV=production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "corsheaders",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "sdrbot",
    "knowledge",
    "conversations",
    "drafts",
    "crm",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "sdrbot.urls"
WSGI_APPLICATION = "sdrbot.wsgi.application"

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
                "sdrbot.context_processors.staff",
            ],
        },
    },
]

# --- data stores -------------------------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default="") or devservices.postgres_url()
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# django-environ leaves a unix-socket directory (…?host=/path) in OPTIONS; Django and psql expect it in HOST.
if not DATABASES["default"].get("HOST") and "host" in DATABASES["default"].get("OPTIONS", {}):
    DATABASES["default"]["HOST"] = DATABASES["default"]["OPTIONS"].pop("host")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
# DB_POOL_MAX_SIZE > 0: each process shares a psycopg pool of at most this many connections among its threads (Django's
# native pool; persistent per-thread connections are then off). Widget event streams hold a gunicorn thread each, so a
# server sized for many open chats has many threads: without a pool every thread keeps its own PostgreSQL connection.
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=12)
if DB_POOL_MAX_SIZE > 0:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": DB_POOL_MAX_SIZE, "timeout": env.float("DB_POOL_TIMEOUT", default=10.0)}
# a `SELECT 1` before the first query of every request on a reused connection (docs/benchmarks.md: about a tenth of a
# widget post's time); turn off where connections are known to stay up
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=True)
# Server-side parameters, and psycopg prepares a statement run DB_PREPARE_THRESHOLD times on a connection: PostgreSQL
# then skips parsing and planning it (docs/benchmarks.md, widget API: a post's PostgreSQL CPU 3.2 → 1.2 ms). Set
# DB_SERVER_SIDE_BINDING=false behind a pooler that cannot keep prepared statements (PgBouncer in transaction mode
# before 1.21, or without max_prepared_statements).
if env.bool("DB_SERVER_SIDE_BINDING", default=True):
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=env.int("DB_PREPARE_THRESHOLD", default=5))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="") or devservices.redis_url()

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "sdrbot",
    }
}

# --- Celery (sdrbot/celery.py reads CELERY_* from here) -----------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)  # seconds, hard kill
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)  # seconds
# A task unacknowledged for this long is redelivered; must exceed the hard time limit (acks_late).
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)  # seconds
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_RESULT_EXPIRES = 3600
# Work reports its state in rows (a draft's status, an outbox row's attempts), not in task results: storing results
# cost a Redis write per task and, on the publishing side, a result subscription per message queued (about a sixth
# of queuing a draft, docs/benchmarks.md). A task whose caller waits for it (sdrbot.ping) keeps its result.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# tasks keep their database connection under Django's CONN_MAX_AGE rule instead of a new one per task (celery.py)
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1_000_000)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "rollout-weekly-rollup": {"task": "drafts.rollout_weeks_refresh", "schedule": 6 * 3600.0},
    "rollout-circuit-breaker": {
        "task": "drafts.rollout_breaker",
        "schedule": env.float("ROLLOUT_BREAKER_SECONDS", default=300.0),
    },
    "knowledge-refresh-due-sources": {
        "task": "knowledge.sources_refresh_due",
        "schedule": env.float("KB_REFRESH_CHECK_SECONDS", default=900.0),
    },
    "crm-outbox-sweep": {"task": "crm.outbox_sweep", "schedule": env.float("OUTBOX_SWEEP_SECONDS", default=30.0)},
}

# --- model providers ---------------------------------------------------------------------------------------------
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="") or None
OPENAI_TIMEOUT = env.float("OPENAI_TIMEOUT", default=30.0)  # seconds per request
EMBEDDING_PROVIDER = env.str("EMBEDDING_PROVIDER", default="local")  # local | openai
OPENAI_EMBEDDING_MODEL = env.str("OPENAI_EMBEDDING_MODEL", default="text-embedding-3-small")
# The chunk.embedding column is vector(EMBEDDING_DIMENSIONS); changing it needs a migration and a re-embed.
EMBEDDING_DIMENSIONS = env.int("EMBEDDING_DIMENSIONS", default=384)
EMBEDDING_BATCH_SIZE = env.int("EMBEDDING_BATCH_SIZE", default=32)
EMBEDDING_THREADS = env.int("EMBEDDING_THREADS", default=0)  # 0 = onnxruntime's default (all cores)

OPENAI_CHAT_MODEL = env.str("OPENAI_CHAT_MODEL", default="gpt-4o-mini")
# price per million tokens, for the cost estimate stored on each draft (defaults: gpt-4o-mini list prices)
OPENAI_PRICE_INPUT_PER_MTOK = env.float("OPENAI_PRICE_INPUT_PER_MTOK", default=0.15)
OPENAI_PRICE_OUTPUT_PER_MTOK = env.float("OPENAI_PRICE_OUTPUT_PER_MTOK", default=0.60)
RETRY_MAX_ATTEMPTS = env.int("RETRY_MAX_ATTEMPTS", default=3)
RETRY_BASE_SECONDS = env.float("RETRY_BASE_SECONDS", default=0.5)
RETRY_MAX_SECONDS = env.float("RETRY_MAX_SECONDS", default=8.0)

# --- drafting ---
CLASSIFIER_MIN_CONFIDENCE = env.float("CLASSIFIER_MIN_CONFIDENCE", default=0.5)
# offline responder: reuse the reply of a resolved ticket at or above this cosine similarity (same category)
RESPONDER_ADAPT_MIN_SIMILARITY = env.float("RESPONDER_ADAPT_MIN_SIMILARITY", default=0.80)
# offline responder: abstain (needs human) when the best passage is below this cosine similarity
RESPONDER_MIN_SIMILARITY = env.float("RESPONDER_MIN_SIMILARITY", default=0.45)
GROUNDING_SUPPORT_THRESHOLD = env.float("GROUNDING_SUPPORT_THRESHOLD", default=0.5)
MONITOR_MIN_GROUNDING = env.float("MONITOR_MIN_GROUNDING", default=0.5)  # below: the low_grounding monitor fires

# --- knowledge base ----------------------------------------------------------------------------------------------
KB_CHUNK_TARGET_TOKENS = env.int("KB_CHUNK_TARGET_TOKENS", default=200)
KB_CHUNK_OVERLAP_TOKENS = env.int("KB_CHUNK_OVERLAP_TOKENS", default=40)
KB_MAX_DOCUMENT_BYTES = env.int("KB_MAX_DOCUMENT_BYTES", default=5 * 1024 * 1024)
KB_HNSW_EF_SEARCH = env.int("KB_HNSW_EF_SEARCH", default=64)
KB_RRF_K = env.int("KB_RRF_K", default=60)
KB_FTS_CONFIG = env.str("KB_FTS_CONFIG", default="english")
KB_FTS_RANK = env.str("KB_FTS_RANK", default="ts_rank_cd")  # ts_rank_cd | ts_rank (docs/benchmarks.md compares)
KB_FTS_RANK_NORMALIZATION = env.int("KB_FTS_RANK_NORMALIZATION", default=1)  # Postgres rank normalization bits
# keyword search ranks at most this many candidate chunks when a query matches more (0 = rank every match)
KB_FTS_MAX_RANKED = env.int("KB_FTS_MAX_RANKED", default=500)

# --- sales (SDR) and the CRM outbox (crm/) -----------------------------------------------------------------------
CRM_TIMEOUT = env.float("CRM_TIMEOUT", default=10.0)  # seconds per CRM request
CRM_WEBHOOK_SECRET = env.str("CRM_WEBHOOK_SECRET", default="")  # HMAC-SHA256 signing secret of the webhook adapter
CRM_HUBSPOT_TOKEN = env.str("CRM_HUBSPOT_TOKEN", default="")  # private-app token of the HubSpot-compatible adapter
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=8)  # then the row is dead (failed) until re-delivered
OUTBOX_RETRY_BASE_SECONDS = env.float("OUTBOX_RETRY_BASE_SECONDS", default=2.0)
OUTBOX_RETRY_MAX_SECONDS = env.float("OUTBOX_RETRY_MAX_SECONDS", default=300.0)
OUTBOX_LEASE_SECONDS = env.float("OUTBOX_LEASE_SECONDS", default=60.0)  # must exceed CRM_TIMEOUT
OUTBOX_QUEUE = env.str("OUTBOX_QUEUE", default="celery")  # Celery queue of deliveries (workers: -Q celery,<this>)
CELERY_TASK_ROUTES = {"crm.outbox_deliver": {"queue": OUTBOX_QUEUE}, "crm.outbox_sweep": {"queue": OUTBOX_QUEUE}}
SDR_INTENT_MIN_CONFIDENCE = env.float("SDR_INTENT_MIN_CONFIDENCE", default=0.0)  # 0 = the threshold tuned at training

# --- tracing -----------------------------------------------------------------------------------------------------
LANGFUSE_PUBLIC_KEY = env.str("LANGFUSE_PUBLIC_KEY", default="")
LANGFUSE_SECRET_KEY = env.str("LANGFUSE_SECRET_KEY", default="")
LANGFUSE_HOST = env.str("LANGFUSE_HOST", default="")
LANGFUSE_EXPORT_TIMEOUT = env.float("LANGFUSE_EXPORT_TIMEOUT", default=5.0)  # seconds per export call

# --- web ---------------------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve static files straight from the app folders (no collectstatic needed for the demo); production runs
# collectstatic and may turn this off (docs/deploy.md).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="sdrbot@localhost")
LOGIN_URL = "/console/login/"
LOGIN_REDIRECT_URL = "/console/"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- customer widget and public API (conversations/api.py; README "Customer widget and public API") -------------
# CORS only for the public API; which origins is decided per site key (conversations.api.cors_origin_allowed)
CORS_URLS_REGEX = r"^/api/widget/.*$"
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "x-site-key", "x-identity-token"]
CORS_EXPOSE_HEADERS = ["Retry-After"]
CORS_PREFLIGHT_MAX_AGE = 600  # seconds
# DRF rate strings (N/second|minute|hour|day); throttle state lives in the Redis cache
WIDGET_THROTTLE_SITE = env.str("WIDGET_THROTTLE_SITE", default="6000/min")
WIDGET_THROTTLE_IP = env.str("WIDGET_THROTTLE_IP", default="120/min")
WIDGET_THROTTLE_CONVERSATION = env.str("WIDGET_THROTTLE_CONVERSATION", default="30/min")
WIDGET_MAX_MESSAGE_CHARS = env.int("WIDGET_MAX_MESSAGE_CHARS", default=4000)
WIDGET_MAX_REQUEST_BYTES = env.int("WIDGET_MAX_REQUEST_BYTES", default=16384)
WIDGET_STREAM_SECONDS = env.float("WIDGET_STREAM_SECONDS", default=25.0)  # then the client reconnects
WIDGET_STREAM_POLL_SECONDS = env.float("WIDGET_STREAM_POLL_SECONDS", default=0.25)  # only without the listener
# streams and long polls wake on PostgreSQL NOTIFY (conversations/live.py); false where LISTEN cannot reach PostgreSQL
WIDGET_NOTIFY_LISTEN = env.bool("WIDGET_NOTIFY_LISTEN", default=True)
WIDGET_STREAM_TOKEN_SECONDS = env.int("WIDGET_STREAM_TOKEN_SECONDS", default=60)
WIDGET_LONGPOLL_MAX_SECONDS = env.float("WIDGET_LONGPOLL_MAX_SECONDS", default=25.0)
WIDGET_EXPECTED_REPLY_MINUTES = env.int("WIDGET_EXPECTED_REPLY_MINUTES", default=60)
SPECTACULAR_SETTINGS = {
    "TITLE": "sdrbot public widget API",
    "DESCRIPTION": "The API behind the embeddable chat widget: start a conversation, post messages, receive "
                   "replies (server-sent events or long polling), rate a bot reply, ask for a person.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": "/api/widget/v1",
    "PREPROCESSING_HOOKS": ["conversations.api.schema_public_only"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # the docs page is Swagger UI from the sidecar package: no CDN; validatorUrl None = no badge from swagger.io
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "APPEND_COMPONENTS": {"securitySchemes": {
        "IdentityToken": {"type": "apiKey", "in": "header", "name": "X-Identity-Token"},
    }},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"}, "openai": {"level": "WARNING"}},
}
