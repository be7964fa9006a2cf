"""Settings for the platform, all read from the environment through :mod:`config.env`.

Two shapes, chosen only by environment variables:

* **Embedded default** (nothing set): SQLite in ``var/``, media on the local disk, and a
  file-based Celery transport, so ``make demo`` needs no server.
* **Production**: ``DATABASE_URL=postgres://...``, ``CELERY_BROKER_URL=redis://...`` (or
  ``amqp://``), ``DJANGO_SECRET_KEY``, ``DJANGO_ALLOWED_HOSTS``; ``DJANGO_DEBUG`` unset.

See README.md "Configuration" for every variable.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import Env

env = Env()
BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env.str("SCIT2I_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env.bool("DJANGO_DEBUG", False)
if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", "insecure-development-key-only-for-debug-mode-0123456789")
else:
    SECRET_KEY = env.secret("DJANGO_SECRET_KEY", min_length=50)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "annotation",
    "curation",
    "ml",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ServiceUnavailableMiddleware",  # database/broker outage -> 503 + Retry-After
    "config.login_rate.LoginRateMiddleware",  # sign-in floods -> 429 before any password hash or axes row
    "annotation.input_guard.RejectNulMiddleware",  # NUL in the path or query -> 400 (PostgreSQL refuses NUL)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a login lockout into its 429 page
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "annotation.context_processors.user_roles",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
_db_url = env.str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
try:
    # Health checks: a persistent connection that died during a database outage is replaced on its next
    # request instead of failing it (tests/system/test_faults_outage.py).
    _default_db = dj_database_url.parse(
        _db_url, conn_max_age=env.int("DATABASE_CONN_MAX_AGE", 0, minimum=0), conn_health_checks=True
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # The SQLite fallback of the queue: IMMEDIATE transactions take the write lock at BEGIN,
    # so every queue transaction runs alone (see annotation/services/queue.py).
    _default_db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif _default_db["ENGINE"] == "django.db.backends.postgresql":
    _default_db["ENGINE"] = "config.postgresql"  # Django's backend, with a health check that costs no round trip
    if env.bool("DATABASE_PREPARED_STATEMENTS", True):
        # Django's own options: every statement is bound server-side (server_side_binding) and psycopg
        # prepares each from its 5th run on a connection (prepare_threshold), so PostgreSQL stops planning
        # the queue's statements on every request: planning cost more than running them (docs/benchmarks/
        # queue.md). Pays with persistent connections (DATABASE_CONN_MAX_AGE > 0); turn off behind a pooler
        # that cannot keep prepared statements (PgBouncer in transaction mode before 1.21).
        _default_db.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------------------
# Enforced wherever a password is set by a person: adduser, the Django admin, password changes.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env.int("PASSWORD_MIN_LENGTH", 10, minimum=8)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes): LOGIN_FAILURE_LIMIT wrong passwords for one username from one
# address lock that pair out for LOGIN_LOCKOUT_MINUTES (every further failure restarts the clock);
# a successful login before the limit clears the count. It covers every sign-in that goes through
# django.contrib.auth.authenticate with the request: the login page, the Django admin's login and
# the API token endpoint. `python manage.py axes_reset_username NAME` lifts a lockout early.
AUTHENTICATION_BACKENDS = [
    "annotation.permissions.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Sign-in attempts (successes too) per minute, counted in each worker process before any password is hashed
# (config/login_rate.py): per client address (REMOTE_ADDR, as axes) and overall; over either -> 429.
LOGIN_RATE_LIMITING = env.bool("LOGIN_RATE_LIMITING", True)
LOGIN_RATE_PER_ADDRESS = env.int("LOGIN_RATE_PER_ADDRESS", 30, minimum=1)
LOGIN_RATE_OVERALL = env.int("LOGIN_RATE_OVERALL", 60, minimum=1)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation -----------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static and media ---------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing root
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Media on S3-compatible storage (AWS S3, MinIO, Ceph...) through django-storages when a bucket is
# named; credentials come from the standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables
# (or an instance role). Images are still served only through the app's permission-checked
# endpoints, streamed from the bucket; the bucket itself stays private.
MEDIA_S3_BUCKET = env.str("MEDIA_S3_BUCKET", "")
if MEDIA_S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": MEDIA_S3_BUCKET,
            "endpoint_url": env.str("MEDIA_S3_ENDPOINT_URL", "") or None,
            "region_name": env.str("MEDIA_S3_REGION", "") or None,
            "location": env.str("MEDIA_S3_PREFIX", "media"),
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }

# --- Cache -------------------------------------------------------------------------------
# Shared by every web and worker process: Redis when CACHE_URL is set (redis://host:6379/2), else files
# under var/ (one host). It holds only recomputable figures (curation/services/figures.py).
CACHE_URL = env.str("CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
}

# --- Uploads (see annotation/imaging.py) ---------------------------------------------------
IMAGE_MAX_BYTES = env.int("IMAGE_MAX_BYTES", 20 * 1024 * 1024, minimum=1)
IMAGE_MAX_SIDE = env.int("IMAGE_MAX_SIDE", 8192, minimum=16)
IMAGE_MAX_PIXELS = env.int("IMAGE_MAX_PIXELS", 40_000_000, minimum=256)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- The queue ----------------------------------------------------------------------------
LEASE_TTL = timedelta(seconds=env.int("LEASE_TTL_SECONDS", 600, minimum=10))
UNDO_WINDOW = timedelta(seconds=env.int("UNDO_WINDOW_SECONDS", 300, minimum=0))
QUEUE_LOCK_WINDOW = env.int("QUEUE_LOCK_WINDOW", 4, minimum=1)
DEFAULT_OVERLAP_K = env.int("DEFAULT_OVERLAP_K", 3, minimum=1)

# --- Curation -----------------------------------------------------------------------------
# Consensus: the majority label needs at least this share of a pair's (non-gold) judgements.
CONSENSUS_MIN_SHARE = env.float("CONSENSUS_MIN_SHARE", 2 / 3, minimum=0.5, maximum=1.0)
GOLD_RATE = env.float("GOLD_RATE", 0.1, minimum=0.0, maximum=1.0)  # share of queue picks that are gold
GOLD_MIN_ITEMS = env.int("GOLD_MIN_ITEMS", 5, minimum=1)  # gold judgements before an annotator is assessed
GOLD_MIN_ACCURACY = env.float("GOLD_MIN_ACCURACY", 0.7, minimum=0.0, maximum=1.0)
# Share of a task's qualification set an annotator must answer right before the task serves them its pairs.
QUALIFICATION_MIN_ACCURACY = env.float("QUALIFICATION_MIN_ACCURACY", 0.8, minimum=0.0, maximum=1.0)
# The dashboard and agreement pages serve cached figures (curation/services/figures.py): a background
# refresh is queued once they are older than FIGURES_MAX_AGE; past FIGURES_MAX_STALE (no worker took it)
# the request computes them. 0 computes on every request.
FIGURES_MAX_AGE = env.int("FIGURES_MAX_AGE_SECONDS", 60, minimum=0)
FIGURES_MAX_STALE = env.int("FIGURES_MAX_STALE_SECONDS", 900, minimum=1)
# Imports read files only under these folders (the API never reads arbitrary server paths).
IMPORT_ROOTS = env.list("IMPORT_ROOTS", [str(MEDIA_ROOT / "imports")])
# Inputs up to this size import in one transaction; larger ones in complete, idempotent batches.
IMPORT_SINGLE_TRANSACTION_MAX_BYTES = env.int("IMPORT_SINGLE_TRANSACTION_MAX_BYTES", 1024**3, minimum=0)

# --- REST framework and OpenAPI -----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an unauthenticated request gets 401 with a WWW-Authenticate header.
        "annotation.authentication.TokenAuthentication",  # DRF's, in one statement
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "annotation.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "annotation.openapi.AutoSchema",  # documents the common 400/401/403/404
    "DEFAULT_PARSER_CLASSES": [
        "annotation.input_guard.JSONParser",  # NUL in a JSON body -> 400
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Science-T2I curation platform API",
    "DESCRIPTION": "Expert judgements of adversarial image pairs for scientifically faithful text-to-image data.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The curation Label choices appear under several field names (label, answer, labels).
    "ENUM_NAME_OVERRIDES": {"LabelEnum": "curation.models.Label"},
}

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery" / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # exchange tables; kombu's default is ./control
        "store_processed": False,
    }
_results_dir = VAR_DIR / "celery" / "results"
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", f"file://{_results_dir}")
if CELERY_RESULT_BACKEND.startswith("file://"):
    Path(CELERY_RESULT_BACKEND.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
CELERY_TASK_DEFAULT_QUEUE = "default"
# ML runs go to the GPU workers; schedule firings and trigger checks are cheap and stay on default.
CELERY_TASK_ROUTES = {"ml.tasks.execute_run": {"queue": "gpu"}}
CELERY_TASK_ACKS_LATE = True  # a message is acknowledged only when its task has finished...
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...and requeued when the process running it dies
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a busy GPU worker holds no other run hostage
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The longest a run may take (hard limit: the pool process is killed; the soft limit lets the
# run stop and record why). The broker's visibility timeout (Redis, SQS) must exceed it, or the
# broker would hand a still-running run to a second worker; a worker that died outright has its
# run redelivered once the visibility timeout passes, and the run resumes from its checkpoint.
ML_RUN_TIME_LIMIT = env.int("ML_RUN_TIME_LIMIT_SECONDS", 24 * 3600, minimum=10)
_soft_margin = env.int("ML_RUN_SOFT_MARGIN_SECONDS", 300, minimum=1)
if _soft_margin >= ML_RUN_TIME_LIMIT:
    # A margin as long as the limit left a soft limit of 1 s: every run was stopped at once (a worker broke).
    raise ImproperlyConfigured(
        f"ML_RUN_SOFT_MARGIN_SECONDS ({_soft_margin}) must be smaller than ML_RUN_TIME_LIMIT_SECONDS "
        f"({ML_RUN_TIME_LIMIT}): the soft limit, when a run is asked to stop, is the limit minus the margin."
    )
ML_RUN_SOFT_TIME_LIMIT = ML_RUN_TIME_LIMIT - _soft_margin
CELERY_BROKER_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", ML_RUN_TIME_LIMIT + 3600, minimum=1)
if CELERY_BROKER_VISIBILITY_TIMEOUT <= ML_RUN_TIME_LIMIT and not env.bool("ML_ALLOW_SHORT_VISIBILITY", False):
    raise ImproperlyConfigured(
        "CELERY_VISIBILITY_TIMEOUT_SECONDS must exceed ML_RUN_TIME_LIMIT_SECONDS, or a broker would deliver "
        "a running run to a second worker."
    )
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "sqs://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A publish must fail fast when Redis is away (config/celery.py: publish -> 503), not hang on a
    # connect; socket_timeout (> the 1 s BRPOP timeout) ends a read on a connection that went silent.
    CELERY_BROKER_TRANSPORT_OPTIONS |= {"socket_connect_timeout": 2, "socket_timeout": 10}
# Enqueueing fails fast, whatever the result backend: bounded connect timeouts and retries for the broker
# and for a Redis result backend (whose default retry policy, 20 retries a second apart, held a web request
# for about 20 s before answering 500 and leaving the row queued with no message; issue 15).
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.25, "interval_max": 0.5}
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
CELERY_REDIS_SOCKET_TIMEOUT = 10
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.25, "interval_max": 0.5}
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Stuck work (curation.services.jobs.sweep, ml.services.runs.lifecycle.sweep): rows queued with no message
# behind them are failed; running ones whose heartbeat went stale are re-enqueued (resumed) or failed.
_stuck_work_interval = env.int("STUCK_WORK_SWEEP_INTERVAL_SECONDS", 60, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "reclaim-expired-leases": {
        "task": "annotation.tasks.reclaim_expired_leases",
        "schedule": env.int("LEASE_RECLAIM_INTERVAL_SECONDS", 60, minimum=1),
    },
    "sweep-stuck-jobs": {"task": "curation.tasks.sweep_stuck_jobs", "schedule": _stuck_work_interval},
    "sweep-stuck-runs": {"task": "ml.tasks.sweep_stuck_runs", "schedule": _stuck_work_interval},
}

# --- ML runs (see ml/services/runs and README "GPU jobs") ----------------------------------
# Work folders (checkpoints, exported data) and registered models must be on storage every GPU
# worker sees at the same path (a shared filesystem); media can be on S3 (see STORAGES above).
ML_WORK_ROOT = Path(env.str("ML_WORK_ROOT", str(VAR_DIR / "ml" / "runs")))
ML_MODEL_ROOT = Path(env.str("ML_MODEL_ROOT", str(VAR_DIR / "ml" / "models")))
ML_HEARTBEAT_SECONDS = env.float("ML_HEARTBEAT_SECONDS", 10.0, minimum=0.1)
# A running run whose heartbeat is older than this has lost its worker: a redelivery resumes it.
# A redelivery that finds a fresh heartbeat is retried later instead of running the run twice.
ML_STALE_AFTER_SECONDS = env.float("ML_STALE_AFTER_SECONDS", 60.0, minimum=0.5)
# Seconds a cancelled run's processes get to stop after SIGTERM before SIGKILL.
ML_CANCEL_GRACE_SECONDS = env.float("ML_CANCEL_GRACE_SECONDS", 10.0, minimum=0.0)

# --- Cookies: never readable by scripts (the annotate page takes its CSRF token from the HTML),
# not sent on cross-site subrequests; Secure as well in production (below).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"

# --- Production hardening (manage.py check --deploy is clean with DJANGO_DEBUG unset) -----
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
    # django-axes logs every successful login at INFO; failures and lockouts are WARNINGs.
    "loggers": {"axes": {"level": env.str("AXES_LOG_LEVEL", "WARNING")}},
}
