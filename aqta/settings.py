"""Aqta settings: one module, every knob read from the environment.

With no environment at all Aqta runs *embedded*: a SQLite file under ``var/``,
process-local cache and counters, Celery tasks executed eagerly, one worker. That is
what ``make run`` uses. Setting ``DATABASE_URL`` and ``REDIS_URL`` switches to the
production shape (PostgreSQL with a connection pool, Redis for cache, counters and
the Celery broker). Secrets have no production defaults: outside the embedded mode a
missing ``SECRET_KEY`` or ``AQTA_API_KEY_PEPPER`` stops start-up with a clear message.

Every variable is listed, with its default, in the README's configuration table. The
readers (``env``, ``envbool``, ...) and the ``DATABASE_URL`` parser are in ``aqta.env``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from aqta.env import database_from_url, env, envbool, envfloat, envint, envlist

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("AQTA_VAR_DIR", BASE_DIR / "var"))


DATABASE_URL = env("DATABASE_URL", "") or ""
REDIS_URL = env("REDIS_URL", "") or ""
# Embedded = nothing external configured. Only then may secrets be generated locally.
EMBEDDED = not DATABASE_URL and not REDIS_URL


def _local_secret(filename: str) -> str:
    """A random secret kept in ``var/`` (outside the database), created on first use."""
    path = VAR_DIR / filename
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def required_secret(name: str, local_file: str) -> str:
    value = env(name)
    if value:
        return value
    if EMBEDDED:
        return _local_secret(local_file)
    raise ImproperlyConfigured(
        f"{name} is not set. Outside the embedded mode (DATABASE_URL or REDIS_URL is set) "
        f"Aqta needs {name} (or {name}_FILE) from the environment; generate one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
    )


SECRET_KEY = required_secret("SECRET_KEY", "secret_key")
# Server-side pepper for API-key digests (HMAC-SHA256). Never stored in the database:
# a database dump alone cannot be used to test guessed keys.
AQTA_API_KEY_PEPPER = required_secret("AQTA_API_KEY_PEPPER", "api_key_pepper")


def _encryption_keys() -> list[str]:
    """Fernet keys (urlsafe base64 of 32 bytes); embedded mode derives one from a local secret."""
    value = env("AQTA_ENCRYPTION_KEYS")
    if value:
        return [k.strip() for k in value.split(",") if k.strip()]
    if EMBEDDED:
        import base64
        import hashlib

        seed = _local_secret("encryption_key").encode()
        return [base64.urlsafe_b64encode(hashlib.sha256(seed).digest()).decode()]
    raise ImproperlyConfigured(
        "AQTA_ENCRYPTION_KEYS is not set. Outside the embedded mode Aqta needs it to encrypt "
        "provider credentials and logged content; generate one with `python -c 'from "
        "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
    )


AQTA_ENCRYPTION_KEYS = _encryption_keys()

DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # django.contrib.admin, whose site records every change in the audit trail.
    "compliance.apps.AuditedAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.mfa",
    "django_ratelimit",
    "billing",
    "accounts",
    "compliance",
    "healthcare",
    "gateway",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.StaffMFAMiddleware",
    "django_ratelimit.middleware.RatelimitMiddleware",
    "aqta.errors.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "aqta.urls"
WSGI_APPLICATION = "aqta.wsgi.application"
ASGI_APPLICATION = "aqta.asgi.application"

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


if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "aqta.sqlite3",
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            # A file, so a live gateway process started by the tests can share it.
            "TEST": {"NAME": str(VAR_DIR / "test-aqta.sqlite3")},
        }
    }

# Seconds a cache command may wait on Redis (connecting, then each reply): a frozen Redis
# must cost a request at most this, after which the cache answers from process memory.
CACHE_REDIS_TIMEOUT = envfloat("CACHE_REDIS_TIMEOUT", 0.5)


def redis_cache(url: str) -> dict:
    """The default cache on Redis: throttles and lockouts, kept in process memory while
    Redis is away (``aqta.cache``)."""
    return {
        "BACKEND": "aqta.cache.FallbackRedisCache",
        "LOCATION": url,
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", "aqta"),
        "OPTIONS": {
            "socket_timeout": CACHE_REDIS_TIMEOUT,
            "socket_connect_timeout": CACHE_REDIS_TIMEOUT,
        },
    }


if REDIS_URL:
    CACHES = {"default": redis_cache(REDIS_URL)}
    # django-ratelimit only lists third-party Redis backends; Django's own RedisCache (which
    # FallbackRedisCache extends) increments with Redis INCR, which is what the check is about.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # One embedded worker process: its local-memory cache *is* the shared cache.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
# Sessions live in the database: a Redis outage must not sign anybody out.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security -------------------------------------------------------------------------
# Outside the embedded mode cookies are HTTPS-only and HSTS is on; TLS is usually
# terminated by the load balancer, which then sets X-Forwarded-Proto.
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not EMBEDDED)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not EMBEDDED)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if EMBEDDED else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not EMBEDDED)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", not EMBEDDED)
if envbool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
CSRF_FAILURE_VIEW = "aqta.errors.csrf_failure"
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)

# --- Email ------------------------------------------------------------------------------
EMAIL_HOST = env("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = envint("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Aqta <no-reply@aqta.local>")

# --- allauth ----------------------------------------------------------------------------
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", "optional")
# The API answers 409 for a duplicate email, so signup cannot also hide that the
# address exists; login still answers the same for unknown email and wrong password.
ACCOUNT_PREVENT_ENUMERATION = False
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.adapters.SocialAccountAdapter"
ACCOUNT_RATE_LIMITS = {
    "login": env("AQTA_LOGIN_RATE", "30/m/ip"),
    "login_failed": env("AQTA_LOGIN_FAILED_RATE", "10/m/ip,5/300s/key"),
    "signup": env("AQTA_SIGNUP_RATE", "20/m/ip"),
    "reset_password": "20/m/ip,5/m/key",
}
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_LOGIN_ON_GET = False
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "/accounts/login/"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Aqta"
# Staff must enrol a TOTP authenticator before they can use the admin.
AQTA_STAFF_REQUIRE_MFA = envbool("AQTA_STAFF_REQUIRE_MFA", not EMBEDDED)


def _oidc_app(provider_id: str, name: str, server_url: str) -> dict | None:
    client_id = env(f"{provider_id.upper()}_CLIENT_ID")
    if not client_id:
        return None
    return {
        "provider_id": provider_id,
        "name": name,
        "client_id": client_id,
        "secret": env(f"{provider_id.upper()}_CLIENT_SECRET", ""),
        "settings": {"server_url": server_url, "oauth_pkce_enabled": True},
    }


# Google and Microsoft both speak standard OpenID Connect, so they are configured as
# allauth's generic OIDC provider: one code path, testable against any OIDC server.
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        "APPS": [
            app
            for app in (
                _oidc_app(
                    "google",
                    "Google",
                    env("GOOGLE_OIDC_URL", "https://accounts.google.com") or "",
                ),
                _oidc_app(
                    "microsoft",
                    "Microsoft",
                    env(
                        "MICROSOFT_OIDC_URL",
                        "https://login.microsoftonline.com/"
                        + (env("MICROSOFT_TENANT", "common") or "common")
                        + "/v2.0",
                    )
                    or "",
                ),
            )
            if app
        ],
        "OAUTH_PKCE_ENABLED": True,
    }
}

# --- REST framework ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "accounts.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "aqta.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
    ],
    "EXCEPTION_HANDLER": "aqta.errors.drf_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Aqta control-plane API",
    "DESCRIPTION": "Accounts, API keys and analytics. The /v1 gateway is OpenAI's API.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request and response components apart, so required text fields carry minLength: 1.
    "COMPONENT_SPLIT_REQUEST": True,
    # Two "status" enums: name each rather than let a hash suffix tell them apart.
    "ENUM_NAME_OVERRIDES": {
        "ApiKeyStatusEnum": ["active", "revoked", "expired"],
        "TraceStatusEnum": "gateway.models.TraceStatus",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# django-ratelimit guards the control plane's write endpoints.
RATELIMIT_VIEW = "aqta.errors.ratelimited_view"
# A count the cache cannot give (a window expiring between django-ratelimit's add and
# incr) admits the request rather than refusing it against a limit of 0.
RATELIMIT_FAIL_OPEN = True
AQTA_KEY_CREATE_RATE = env("AQTA_KEY_CREATE_RATE", "30/m")
AQTA_API_LOGIN_RATE = env("AQTA_API_LOGIN_RATE", "20/m")
AQTA_API_SIGNUP_RATE = env("AQTA_API_SIGNUP_RATE", "10/m")

# --- Audit trail ------------------------------------------------------------------------
# Signed checkpoints of every chain head go to this write-once file store, outside the
# database (docs/audit.md): in production a separate volume or a write-once bucket mount.
AQTA_CHECKPOINT_DIR = env("AQTA_CHECKPOINT_DIR", "") or str(VAR_DIR / "checkpoints")
# How often beat signs the chains that moved; a full file (every chain) at least this often.
AQTA_CHECKPOINT_INTERVAL_SECONDS = envint("AQTA_CHECKPOINT_INTERVAL_SECONDS", 900)
AQTA_CHECKPOINT_FULL_SECONDS = envint("AQTA_CHECKPOINT_FULL_SECONDS", 86_400)
if AQTA_CHECKPOINT_INTERVAL_SECONDS < 1 or AQTA_CHECKPOINT_FULL_SECONDS < 1:
    raise ImproperlyConfigured("AQTA_CHECKPOINT_*_SECONDS must be at least 1")
# Audit events and receipts are kept this long (never less than the tier's longest trace
# retention); 0 keeps them forever. 2,557 days: 7 years with their leap days.
AQTA_AUDIT_RETENTION_DAYS = envint("AQTA_AUDIT_RETENTION_DAYS", 2557)
# Bias detection and compliance reports (docs/bias.md, docs/reports.md). Probe runs send
# their calls to the gateway's own /v1 at this address (in production: an internal URL of
# the load balancer; the workers need to reach it).
AQTA_GATEWAY_URL = (env("AQTA_GATEWAY_URL", "http://127.0.0.1:8000") or "").rstrip("/")
# A worker holds a job for this long and renews the claim every third of it; a job whose
# worker died is taken over once it lapses.
AQTA_JOB_LEASE_SECONDS = envint("AQTA_JOB_LEASE_SECONDS", 60)
# A probe sent by a worker that died is sent again only this long after (by then the
# gateway has answered it, into the response cache, or given up on it).
AQTA_PROBE_RESEND_AFTER_SECONDS = envfloat("AQTA_PROBE_RESEND_AFTER_SECONDS", 180.0)
AQTA_BIAS_MAX_CALLS = envint("AQTA_BIAS_MAX_CALLS", 20_000)
AQTA_BIAS_PASSIVE_MAX_TRACES = envint("AQTA_BIAS_PASSIVE_MAX_TRACES", 50_000)

# --- Celery -----------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Long compliance jobs are acknowledged late (compliance.jobs): one message at a time per
# worker process, and an unacknowledged message goes back to the queue this long after it
# was delivered if its worker died (a job that runs longer is protected by its lease).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("AQTA_CELERY_VISIBILITY_TIMEOUT", 3600),
}
CELERY_BEAT_SCHEDULE = {
    # Analytics rollups from the traces written since the last run.
    "rollups-refresh": {"task": "gateway.tasks.rollups_refresh", "schedule": 60.0},
    # Traces, content and rollups past each organisation's retention, in small batches.
    "retention-purge": {"task": "compliance.tasks.retention_purge", "schedule": 3600.0},
    # Signed checkpoints of every audit and receipt chain that moved (docs/audit.md).
    "audit-checkpoint": {
        "task": "compliance.tasks.audit_checkpoint",
        "schedule": float(AQTA_CHECKPOINT_INTERVAL_SECONDS),
    },
    # Bias runs and reports whose worker died and whose message is gone (compliance.jobs).
    "jobs-resume": {"task": "compliance.tasks.jobs_resume", "schedule": 60.0},
}

# --- Aqta -------------------------------------------------------------------------------
AQTA_DEFAULT_TIER = env("AQTA_DEFAULT_TIER", "free")
# Data plane (/v1).
AQTA_MAX_REQUEST_BYTES = envint("AQTA_MAX_REQUEST_BYTES", 10 * 1024 * 1024)
# Deepest nesting of arrays/objects in a chat request (400 past it). The schema's own fields
# go 7 levels deep and open-ended places (tool parameter schemas, response_format schemas)
# rarely need 20 more; the upstream serialiser stops at 254, the validator's errors at 255.
AQTA_MAX_JSON_DEPTH = envint("AQTA_MAX_JSON_DEPTH", 64)
if not 16 <= AQTA_MAX_JSON_DEPTH <= 200:
    raise ImproperlyConfigured(
        f"AQTA_MAX_JSON_DEPTH must be between 16 and 200, got {AQTA_MAX_JSON_DEPTH}"
    )
AQTA_UPSTREAM_CONNECT_TIMEOUT = envfloat("AQTA_UPSTREAM_CONNECT_TIMEOUT", 5.0)
AQTA_UPSTREAM_READ_TIMEOUT = envfloat("AQTA_UPSTREAM_READ_TIMEOUT", 120.0)
AQTA_UPSTREAM_RETRIES = envint("AQTA_UPSTREAM_RETRIES", 2)
AQTA_UPSTREAM_POOL_SIZE = envint("AQTA_UPSTREAM_POOL_SIZE", 200)
AQTA_CACHE_TTL_SECONDS = envint("AQTA_CACHE_TTL_SECONDS", 3600)
AQTA_CATALOG_REFRESH_SECONDS = envfloat("AQTA_CATALOG_REFRESH_SECONDS", 30.0)
AQTA_BREAKER_FAILURES = envint("AQTA_BREAKER_FAILURES", 5)
AQTA_BREAKER_OPEN_SECONDS = envint("AQTA_BREAKER_OPEN_SECONDS", 30)
# Server workers also write buffered traces to the database unless a dedicated
# `manage.py run_flusher` process does (the recommended production shape).
AQTA_FLUSH_IN_WORKERS = envbool("AQTA_FLUSH_IN_WORKERS", True)
# Healthcare receipts: the data plane's own PostgreSQL connections per worker for the
# receipt insert, and how long a call waits for one before it is refused (503).
AQTA_RECEIPT_POOL_SIZE = envint("AQTA_RECEIPT_POOL_SIZE", 4)
AQTA_RECEIPT_WRITE_TIMEOUT = envfloat("AQTA_RECEIPT_WRITE_TIMEOUT", 2.0)
# Keys are touched (last_used_at) at most this often, so a busy key is not a write per call.
AQTA_KEY_TOUCH_INTERVAL_SECONDS = envint("AQTA_KEY_TOUCH_INTERVAL_SECONDS", 60)
# Bearer token Prometheus presents to scrape /metrics; without one only loopback clients
# may read it.
AQTA_METRICS_TOKEN = env("AQTA_METRICS_TOKEN", "") or ""

LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "aqta.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": env("LOG_FORMAT", "text")},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.security": {"level": "WARNING"},
    },
}
