"""Settings, read from the environment with embedded defaults.

With nothing set the service runs on SQLite with no message broker, which is
what the README's run command uses. Production sets DATABASE_URL (PostgreSQL)
and REDIS_URL or CELERY_BROKER_URL.
"""

import ipaddress
import logging
import os
from pathlib import Path

from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_clock, env_count, env_database, env_list, env_log_level, env_seconds
from core.rates import parse_rate

BASE_DIR = Path(__file__).resolve().parent.parent


def proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """`X-Forwarded-Proto: https` (what the proxy in front sets on https requests) as Django wants it."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    header, sep, expected = value.partition(":")
    if not sep or not header.strip() or not expected.strip():
        raise ImproperlyConfigured(f"{name} must look like 'X-Forwarded-Proto: https', not {value!r}")
    return "HTTP_" + header.strip().upper().replace("-", "_"), expected.strip()


def forwarded_allow_ips(name: str) -> list[str]:
    """The proxies whose X-Forwarded-For names the client (core.client_address): the addresses or networks gunicorn
    trusts (`forwarded_allow_ips`, which config/gunicorn.py reads from the same variable, with the same default), or
    `*` for any peer. Checked as gunicorn checks it, so a value it would refuse stops this start too."""
    allowed = env_list(name, ["127.0.0.1"])
    for item in allowed:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must list addresses or networks (127.0.0.1,10.0.0.0/8) or be *, not {item!r}"
            ) from None
    return allowed


def cache_settings(redis_url: str | None) -> dict:
    """The default cache: Redis when configured (shared by every worker), else this process's memory.

    The Redis cache fails open (config/cache.py): unreachable, it logs and counts in each process's memory,
    so the throttle and the sign-in limiter never turn a Redis outage into error pages.
    """
    if not redis_url:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    timeout = env_seconds("CACHE_REDIS_TIMEOUT_SECONDS", 0.5)
    return {
        "default": {
            "BACKEND": "config.cache.FailOpenRedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "clinic"),
            # Short socket timeouts: a Redis that stopped answering costs a request this long, once per retry.
            "OPTIONS": {"socket_connect_timeout": timeout, "socket_timeout": timeout},
        }
    }


DEBUG = env_bool("DJANGO_DEBUG", False)
# A developer's or demo machine (bin/run, bin/test, the test suite): allows the embedded secret key and turns
# off by default what only makes sense in production (HTTPS-only cookies and redirects, required staff 2FA).
LOCAL = env_bool("DJANGO_LOCAL", False)

# The secret key signs sessions, password resets and unsubscribe links: a key printed in this file would let
# anyone forge them, so it is used only on a local or debug run, and never when DJANGO_REQUIRE_SECRET_KEY=1.
INSECURE_LOCAL_KEY = "insecure-local-development-key-change-me"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY and (DEBUG or LOCAL) and not env_bool("DJANGO_REQUIRE_SECRET_KEY", False):
    SECRET_KEY = INSECURE_LOCAL_KEY
elif not SECRET_KEY or (SECRET_KEY == INSECURE_LOCAL_KEY and not (DEBUG or LOCAL)):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set in production (and must not be the key printed in config/settings.py). "
        "Generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'. "
        "For a run on your own machine set DJANGO_LOCAL=1 (bin/run and bin/test do) or DJANGO_DEBUG=1."
    )
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# Checks a deployment means to pass over, e.g. reminders.W004 where no text is meant to go (docs/production.md).
SILENCED_SYSTEM_CHECKS = env_list("DJANGO_SILENCED_SYSTEM_CHECKS", [])
CSRF_FAILURE_VIEW = "frontdesk.views.auth.csrf_failure"  # plain words and a way back, not Django's bare 403 page

INSTALLED_APPS = [
    "config.apps.ClinicAdminConfig",  # django.contrib.admin, signed in through the front desk (config/admin.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / ReDoc assets, served locally
    "django_htmx",
    "django_otp",
    "django_otp.plugins.otp_totp",  # staff two-factor sign-in with an authenticator app (TOTP)
    "csp",
    # Ordered bottom to top, as the layers run (docs/architecture.md).
    "clinic",
    "scheduler",
    "reminders",
    "plans",
    "api",
    "fhir",
    "frontdesk",
    "portal",
    "fixtures",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from gunicorn, before sessions and the rest (the quick start needs no proxy).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "config.middleware.TwoFactorRequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.NoStoreMiddleware",
    # Last, so their answers get every header above (no-store, CSP): a NUL in the address or query string is a
    # 400 before any view; an admin date filter outside the calendar is dropped with a message (not a 500).
    "config.request_guards.NulRefusedMiddleware",
    "config.request_guards.AdminDateFilterMiddleware",
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
            ],
        },
    },
]

DATABASES = {
    "default": env_database(
        "DATABASE_URL",
        f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}",
        conn_max_age=env_count("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
# Behind PgBouncer in transaction mode (docs/scaling.md) a connection may change server between
# transactions: no server-side cursors (they outlive a transaction) and no prepared statements (below). The
# code keeps no other session state (SET LOCAL only, no advisory locks, no LISTEN).
DATABASE_PGBOUNCER = env_bool("DATABASE_PGBOUNCER", False)
if DATABASE_PGBOUNCER:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
# PostgreSQL: parameters bound by the server and statements prepared on their second run in a connection
# (psycopg's prepare_threshold), so PostgreSQL parses and plans the hot queries once per connection instead
# of once per run: a quarter less of its CPU per booking, a third less per reminder (docs/benchmarks.md).
# On by default; off behind PgBouncer (before 1.21, or without max_prepared_statements) or with
# DATABASE_PREPARED=0.
DATABASE_PREPARED = env_bool("DATABASE_PREPARED", not DATABASE_PGBOUNCER)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_PREPARED:
    DATABASES["default"].setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 2})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # SQLite takes its write lock at BEGIN IMMEDIATE, so concurrent writers
        # queue for up to `timeout` seconds instead of failing with "database
        # is locked" halfway through a transaction; WAL lets readers go on.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
    # A file (not :memory:) so that threaded tests share one database; name it per
    # run with SQLITE_TEST_NAME when several suites run side by side.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get(
        "SQLITE_TEST_NAME", str(BASE_DIR / "var" / "test.sqlite3")
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"  # stored and processed in UTC; shown in each clinic's own zone
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `manage.py collectstatic` (bin/run does) copies every app's static files here; WhiteNoise serves them.
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "var" / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies (gzip, brotli if installed) made at collectstatic; no manifest, so templates and
    # tests never need collectstatic to render and a missing file can never turn a page into a 500.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- HTTPS, cookies, sessions, content security (docs/production.md) --------------------------------------
# Production is HTTPS only: HSTS, http redirected to https, cookies sent only over https. On by default
# unless DEBUG or LOCAL; behind a TLS-terminating proxy also set DJANGO_SECURE_PROXY_SSL_HEADER.
SECURE = env_bool("DJANGO_SECURE", not (DEBUG or LOCAL))
SECURE_PROXY_SSL_HEADER = proxy_ssl_header("DJANGO_SECURE_PROXY_SSL_HEADER")
# The proxy in front: only from these peers is X-Forwarded-For read, for the client's address the sign-in limiter
# and the API's throttle count (core.client_address; docs/production.md).
FORWARDED_ALLOW_IPS = forwarded_allow_ips("FORWARDED_ALLOW_IPS")
if SECURE:
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env_count("DJANGO_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
# Front-desk terminals are shared: a staff session ends when the browser closes, and in any case a working
# day after sign-in (the session is not refreshed by activity: SESSION_SAVE_EVERY_REQUEST stays off).
SESSION_COOKIE_AGE = int(env_seconds("DJANGO_SESSION_HOURS", 10, unit="hours") * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("DJANGO_SESSION_EXPIRE_AT_BROWSER_CLOSE", True)
# Only this site's own scripts and styles run: no inline script, no eval, no third-party origin. The front
# desk keeps its JavaScript in static files; the API's docs pages relax what they need (api/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],  # a nonce only on pages that ask for one (reminders/_page.html)
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Staff two-factor sign-in (django-otp, TOTP; docs/frontdesk.md) --------------------------------------
# Clinic administrators, anyone who may edit the shared rules or use the admin site must sign in with an
# authenticator code. Off by default on a local or debug run, so the demo users sign in with a password.
STAFF_TWO_FACTOR_REQUIRED = env_bool("STAFF_TWO_FACTOR_REQUIRED", not (DEBUG or LOCAL))
# The name an authenticator app shows next to the code.
OTP_TOTP_ISSUER = os.environ.get("OTP_TOTP_ISSUER", "Clinic front desk")
# After a wrong code the device waits 1, 2, 4, ... seconds (on top of the sign-in limiter below).
OTP_TOTP_THROTTLE_FACTOR = 1
# The admin lists and deletes staff devices (a lost phone) but never shows their secrets or QR codes.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Front desk: staff sign in at /login/ and land on their clinic.
LOGIN_URL = "frontdesk:login"
LOGIN_REDIRECT_URL = "frontdesk:home"
LOGOUT_REDIRECT_URL = "frontdesk:login"
# Failed sign-ins per username and address (and per address alone) within the
# window before further attempts are refused; counted in the default cache,
# which must be shared between workers in production (e.g. Redis).
FRONTDESK_LOGIN_MAX_FAILURES = env_count("FRONTDESK_LOGIN_MAX_FAILURES", 5)
FRONTDESK_LOGIN_MAX_FAILURES_PER_IP = env_count("FRONTDESK_LOGIN_MAX_FAILURES_PER_IP", 30)
FRONTDESK_LOGIN_WINDOW_SECONDS = env_count("FRONTDESK_LOGIN_WINDOW_SECONDS", 900)

# Celery. No broker set means the embedded default: nothing is sent to a broker
# and the reminders subsystem dispatches locally.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or ""
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# A message is acknowledged only after its task ran, and handed back if the
# worker dies mid-task, so a killed worker loses nothing. Not the reminder send
# tasks (reminders.tasks.SEND_TASK): their claim's lease brings their rows back,
# in doubt, so that the provider is asked before a message goes again.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fix-up closes the database connection around every task unless told to
# reuse it; a fresh PostgreSQL backend per reminder doubled its cost (docs/benchmarks.md).
# Connections that are broken or older than CONN_MAX_AGE are still closed (config/celery.py).
CELERY_DB_REUSE_MAX = env_count("CELERY_DB_REUSE_MAX", 100, minimum=0)  # 0: a connection per task, Celery's default

# --- Public API (api/; owned by the API) -------------------------------------------
# Problem details everywhere, JSON only, token or session auth, per-caller throttle.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "api.schema.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiKeyAuthentication",  # first, so a missing key is 401 with WWW-Authenticate
        "rest_framework.authentication.SessionAuthentication",  # staff users; enforces CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.IsApiCaller"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.CallerRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.StrictJSONParser"],
    # `?format=` naming no format of the operation is ignored, as any parameter it does not define (not a 404).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "api.negotiation.IgnoreUnknownFormat",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "api.problems.exception_handler",
    # No OPTIONS metadata: it would describe serializers outside the schema; OPTIONS is a 405.
    "DEFAULT_METADATA_CLASS": None,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Requests per caller (API client, staff user, or anonymous address) per period: N/s, N/min, N/hour, N/day.
API_THROTTLE_RATE = os.environ.get("API_THROTTLE_RATE") or "300/min"
parse_rate(API_THROTTLE_RATE)  # checked at start: read per request, a typo would fail every API request
# A JSON body larger than this is refused with 413 before it is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_count("DATA_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024)
# How long an Idempotency-Key's first response is replayed (the contract says 24 h).
IDEMPOTENCY_KEY_TTL_HOURS = 24

SPECTACULAR_SETTINGS = {
    "TITLE": "Treatment-interval scheduling API",
    "DESCRIPTION": (
        "Book aesthetic-clinic appointments that respect minimum treatment intervals and "
        "contraindications. Errors are RFC 9457 problem details (application/problem+json). "
        "See docs/api.md."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its viewer are public (they describe, they reveal no data).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Separate request and response components, so read-only fields are not asked for.
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc from the pinned sidecar package: no CDN is reachable here.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.postprocess_strict_requests",
        "api.schema.postprocess_response_headers",
        "api.schema.postprocess_links",
        "api.schema.postprocess_merged_redirects",
    ],
    "ENUM_NAME_OVERRIDES": {
        "AppointmentStatusEnum": "clinic.models.AppointmentStatus",
        "ConditionStatusEnum": "clinic.models.ConditionStatus",
        "HistorySourceEnum": "clinic.models.HistorySource",
        "ReminderChannelEnum": "clinic.models.ReminderChannel",
        "EligibilityStatusEnum": ["confirmed", "pending_clearance", "refused"],
    },
}

# The throttle counters live in the cache: per process in memory by default, shared
# across gunicorn workers and hosts in Redis when REDIS_URL is set (failing open: cache_settings).
CACHES = cache_settings(os.environ.get("REDIS_URL"))
# --- end of the public API block ----------------------------------------------------------

# How far ahead the booking services look for the next free slot, and the
# slot grid they offer (minutes).
BOOKING_SEARCH_DAYS = 90
BOOKING_SLOT_STEP_MINUTES = env_count("BOOKING_SLOT_STEP_MINUTES", 15, maximum=24 * 60)

# Benchmarks only (bench/, docs/benchmarks.md): mounts the bare-insert baseline under /bench/. Never in production.
BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS", False)

LOG_LEVEL = env_log_level("LOG_LEVEL", "INFO")
DJANGO_LOG_LEVEL = LOG_LEVEL if logging.getLevelName(LOG_LEVEL) >= logging.INFO else "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # No e-mail address or phone number in a log line, whoever logs it (a provider's refusal quotes the recipient;
    # core.redact). Celery's workers put the same filter on their own handlers (config/celery.py).
    "filters": {
        "contacts_masked": {"()": "core.redact.ContactsMasked"},
        "ticks_quiet": {"()": "core.quiet_ticks.TicksQuiet"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["contacts_masked"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # The beat's ticks (a task it runs more often than once a minute: reminders.dispatch_due, every second) are
    # sent, received and run without a line each at INFO; their failures and retries, and every other task, are
    # logged as ever (core.quiet_ticks). On the loggers, so the filter outlasts Celery's own handlers.
    "loggers": {
        **{
            name: {"filters": ["ticks_quiet"]} for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")
        },
        # Django's own handlers (DEFAULT_LOGGING: an unmasked console one under DEBUG, mail_admins without) taken off:
        # a django.* line goes to the root's masked handler, once, DEBUG or not (a 404's path may hold an address);
        # its runserver request lines too. At LOG_LEVEL, but never below INFO: django.db.backends writes every SQL
        # statement at DEBUG, with its parameters (names, dates of birth, notes), which no mask covers.
        "django": {"handlers": [], "level": DJANGO_LOG_LEVEL},
        "django.server": {"handlers": [], "level": DJANGO_LOG_LEVEL, "propagate": True},
    },
}

# --- Reminders, e-mail, SMS and webhooks (reminders, docs/reminders.md) -------------------
# E-mail goes through Django's backends: the console by default (a newcomer sees
# reminders in the terminal), or set EMAIL_BACKEND to the file backend, SMTP, or an
# anymail backend (e.g. anymail.backends.postmark.EmailBackend with ANYMAIL_* settings).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH") or str(BASE_DIR / "var" / "mail")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_count("EMAIL_PORT", 25, minimum=0, maximum=65535)  # 0: smtplib's default port
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Clinic reminders <reminders@localhost>")
# Every ANYMAIL_<NAME> variable becomes ANYMAIL["<NAME>"] (e.g. ANYMAIL_POSTMARK_SERVER_TOKEN).
ANYMAIL = {key.removeprefix("ANYMAIL_"): value for key, value in os.environ.items() if key.startswith("ANYMAIL_")}

# SMS: console by default; reminders.channels.FileSmsBackend writes JSON lines to
# SMS_FILE_PATH; reminders.channels.TwilioSmsBackend talks to Twilio's REST API.
SMS_BACKEND = os.environ.get("SMS_BACKEND") or "reminders.channels.ConsoleSmsBackend"
SMS_FILE_PATH = os.environ.get("SMS_FILE_PATH") or str(BASE_DIR / "var" / "sms.jsonl")
SMS_FROM = os.environ.get("SMS_FROM", "")
# Inbound SMS (STOP replies) without Twilio's signature check must carry ?token=<this>; unset = refused.
SMS_INBOUND_TOKEN = os.environ.get("SMS_INBOUND_TOKEN", "")
# The public URL the provider posts replies to, if it differs from what Django sees (a proxy in front).
SMS_INBOUND_URL = os.environ.get("SMS_INBOUND_URL", "")
# Where the SMS provider reports a text it accepted was not delivered (reminders.views.sms_status, Twilio): the
# public URL of /reminders/sms/status/; empty, the provider is not asked for reports.
SMS_STATUS_CALLBACK_URL = os.environ.get("SMS_STATUS_CALLBACK_URL", "")
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
TWILIO_MESSAGING_SERVICE_SID = os.environ.get("TWILIO_MESSAGING_SERVICE_SID", "")
TWILIO_API_BASE = os.environ.get("TWILIO_API_BASE", "https://api.twilio.com")

# Links in e-mails (unsubscribe) point here.
REMINDERS_PUBLIC_BASE_URL = os.environ.get("REMINDERS_PUBLIC_BASE_URL", "http://127.0.0.1:8000")
# No SMS between these local times (clinic zone); pre-care moves earlier, post-care later.
REMINDERS_SMS_QUIET_HOURS = (
    env_clock("REMINDERS_SMS_QUIET_START", "21:00"),
    env_clock("REMINDERS_SMS_QUIET_END", "08:00"),
)
# A reschedule is told to the patient only after this many minutes, so a change undone at once sends nothing.
REMINDERS_CHANGE_GRACE_MINUTES = env_count("REMINDERS_CHANGE_GRACE_MINUTES", 5, minimum=0)
# Delivery attempts per message before it is marked failed; backoff doubles from the base up to the cap.
# Messages to one patient on one channel due within this many minutes of each other go as one
# (e.g. the day-before reminder and the pre-care instructions); 0 sends each on its own.
REMINDERS_MERGE_MINUTES = env_count("REMINDERS_MERGE_MINUTES", 10, minimum=0)
REMINDERS_MAX_ATTEMPTS = env_count("REMINDERS_MAX_ATTEMPTS", 6)
REMINDERS_RETRY_BASE_SECONDS = env_count("REMINDERS_RETRY_BASE_SECONDS", 60)
REMINDERS_RETRY_MAX_SECONDS = env_count("REMINDERS_RETRY_MAX_SECONDS", 3600)
# A claimed row whose sender has not finished within the lease is claimed again (the sender died).
# It must exceed the longest send: REMINDERS_SEND_TIMEOUT_SECONDS plus queueing time.
REMINDERS_CLAIM_LEASE_SECONDS = env_count("REMINDERS_CLAIM_LEASE_SECONDS", 300)
REMINDERS_SEND_TIMEOUT_SECONDS = env_count("REMINDERS_SEND_TIMEOUT_SECONDS", 10)
if REMINDERS_CLAIM_LEASE_SECONDS <= REMINDERS_SEND_TIMEOUT_SECONDS:
    # A lease shorter than one send cannot be meant: the claim's rows (a batch, sent one after another) would
    # outlive it. Not what prevents a double send (a send holds its row's lock, and claims skip locked rows).
    raise ImproperlyConfigured(
        f"REMINDERS_CLAIM_LEASE_SECONDS ({REMINDERS_CLAIM_LEASE_SECONDS}) must be above "
        f"REMINDERS_SEND_TIMEOUT_SECONDS ({REMINDERS_SEND_TIMEOUT_SECONDS}), with room for queueing"
    )
REMINDERS_BATCH_SIZE = env_count("REMINDERS_BATCH_SIZE", 100)
# Rows per Celery send task (reminders.send_batch): what they read is read once per task.
REMINDERS_SEND_BATCH_SIZE = env_count("REMINDERS_SEND_BATCH_SIZE", 20)
# How often beat claims due rows: also the ceiling on latency; a claim of nothing due is one indexed query.
REMINDERS_DISPATCH_INTERVAL_SECONDS = env_seconds("REMINDERS_DISPATCH_INTERVAL_SECONDS", 1)
# A beat run whose claim comes back full claims again at once, up to this many claims within the interval
# (REMINDERS_BATCH_SIZE x REMINDERS_CLAIMS_PER_RUN a run: 1,000 a second by default). No claim takes more
# than REMINDERS_MAX_IN_FLIGHT less the rows claimed and unsent: beyond that the workers are the limit, and
# more claims would only wait in the broker. Keep it below what the workers send within the claim lease.
REMINDERS_CLAIMS_PER_RUN = env_count("REMINDERS_CLAIMS_PER_RUN", 10)
REMINDERS_MAX_IN_FLIGHT = env_count("REMINDERS_MAX_IN_FLIGHT", 1000)

# Webhooks: https only, and never to private/loopback addresses (SSRF), except in local development.
WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", DEBUG)
WEBHOOKS_ALLOW_PRIVATE_HOSTS = env_bool("WEBHOOKS_ALLOW_PRIVATE_HOSTS", DEBUG)

# The periodic schedule. Each tick claims due rows. While no worker runs, every entry's runs wait in Redis and a
# worker that starts drops them unrun (each expires after its interval): none is run late, and a minute's duty missed
# is the next minute's. Several beats are safe: claims use SELECT ... FOR UPDATE SKIP LOCKED. Expiry is read against
# the worker's clock: the hosts' clocks must agree (NTP) to within the tick's second.
CELERY_BEAT_SCHEDULE = {
    "reminders-dispatch-due": {
        "task": "reminders.dispatch_due",
        "schedule": REMINDERS_DISPATCH_INTERVAL_SECONDS,
        "options": {"expires": max(REMINDERS_DISPATCH_INTERVAL_SECONDS, 1.0)},
    },
    # Re-checks after a rule change, and care texts being planned for the visits booked before them, that stopped
    # moving (a worker died; the broker was down) go on.
    "resume-rechecks": {"task": "scheduler.resume_rechecks", "schedule": 60.0, "options": {"expires": 60.0}},
    "resume-template-rollouts": {
        "task": "reminders.resume_template_rollouts",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    # Delivery reports read but not recorded when they came (their row locked), kept in the database till then.
    "record-parked-reports": {
        "task": "reminders.record_parked_reports",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    # Idempotency-Key records past their 24-hour replay window (each keeps a POST's answer, patient details in it).
    "purge-idempotency-keys": {
        "task": "api.purge_idempotency_keys",
        "schedule": 86400.0,
        "options": {"expires": 86400.0},
    },
}
# Several deployments (or test runs) can share one Redis by naming their own queue.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
# Redis hands an unacknowledged task to another worker after this long. Only short tasks are
# queued (never far-future ETAs), so an hour is ample; the outbox lease recovers sooner anyway. The one
# task that waits (a delivery report tried again, reminders.tasks.report_wait) waits at most half of it.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_count("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_TASK_IGNORE_RESULT = True
