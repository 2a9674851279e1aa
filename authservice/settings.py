"""Django settings, read from the environment (12-factor).

Every knob is an environment variable documented in the README. The defaults give a
working single-machine service (embedded SQLite, local-memory cache, plain http on
localhost); `DJANGO_SECURE_HTTPS=1` adds what a deployment behind TLS needs.
"""

import os
import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("AUTHSERVICE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """A secret from ``NAME``, or from the file ``NAME_FILE`` names (Docker and Kubernetes
    secrets are mounted as files); one of the two, never both."""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if not path:
        return os.environ.get(name, default)
    if os.environ.get(name):
        raise ImproperlyConfigured(f"Both {name} and {name}_FILE are set: set one of them.")
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}_FILE={path}: cannot be read ({exc.strerror}).") from None


# AUTHSERVICE_ENV=production (the Dockerfile, compose and Kubernetes files set it): the
# service refuses to start without its own secrets, instead of inventing them per
# replica (replicas that generate their own cannot read each other's signing keys,
# audit links or one-time secret pages). Unset (development, `make run`): what is
# missing is generated once into var/, and said so.
ENVIRONMENT = os.environ.get("AUTHSERVICE_ENV", "development").strip().lower() or "development"
if ENVIRONMENT not in ("development", "production"):
    raise ImproperlyConfigured(f"AUTHSERVICE_ENV={ENVIRONMENT!r}: choose development or production.")
PRODUCTION = ENVIRONMENT == "production"
REQUIRED_IN_PRODUCTION = ("DJANGO_SECRET_KEY", "AUTHSERVICE_KEY_ENCRYPTION_KEY")
if PRODUCTION and (missing := [name for name in REQUIRED_IN_PRODUCTION if not env_secret(name).strip()]):
    raise ImproperlyConfigured(
        f"AUTHSERVICE_ENV=production and {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
        "set each (or NAME_FILE, a file holding it) to the same secret on every instance.")


def _development_secret_key() -> str:
    """Development only: a secret key generated once and kept in var/."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50))
    print(f"Development secret key generated in {path} (production sets DJANGO_SECRET_KEY; "
          "see AUTHSERVICE_ENV).", file=sys.stderr)
    return path.read_text().strip()


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_secret("DJANGO_SECRET_KEY") or _development_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")

INSTALLED_APPS = [
    # django.contrib.admin, with the registry's admin site (header, dashboard, navigation).
    "registry.admin_site.RegistryAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "oauth2_provider",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    # The service's own keys and what it signs (the SigningKey model, its commands and
    # checks); before authservice, which builds on it.
    "signing",
    "authservice",
    "registry",
]

MIDDLEWARE = [
    # First: a view failing on an unreachable database or Redis answers 503, not 500.
    "authservice.availability.FailFastMiddleware",
    # A request id on every response and log line; the latency histogram.
    "authservice.observability.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "authservice.oauth_fast_path.OAuthFastPathMiddleware",
    # After the OAuth short path (JSON only); every page gets a strict CSP.
    "authservice.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: locks out repeated failed admin logins.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Five failed logins for one username from one address lock it out for 15 minutes.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "0.25"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# The lockout page looks like the admin it guards.
AXES_LOCKOUT_TEMPLATE = "registry/admin/lockout.html"

# The admin's site header and title.
AUTHSERVICE_ADMIN_TITLE = os.environ.get("AUTHSERVICE_ADMIN_TITLE", "").strip() or "OCEN Registry"

ROOT_URLCONF = "authservice.urls"
WSGI_APPLICATION = "authservice.wsgi.application"

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

# --- Database -------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASE_URL = env_secret("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Fail fast: an unreachable server is a 503 within about a second (see
    # authservice.availability), never a request parked for the pool's default 30 s; and
    # while it stays unreachable, at once (authservice.postgresql: Django's backend with a
    # circuit breaker on taking a connection).
    DATABASES["default"]["ENGINE"] = "authservice.postgresql"
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options.setdefault("connect_timeout", int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "2")))
    # A statement (or a lock wait) never holds a request thread longer than this. 0: none
    # sent (PgBouncer refuses startup options: set it with ALTER ROLE ... SET there).
    statement_timeout_ms = int(os.environ.get("DATABASE_STATEMENT_TIMEOUT_MS", "30000"))
    if statement_timeout_ms:
        options.setdefault("options", f"-c statement_timeout={statement_timeout_ms}")
    # psycopg's pool keeps connections warm between requests and reconnects after a
    # database restart; Django requires CONN_MAX_AGE=0 alongside it.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    if env_bool("DATABASE_POOL", True):
        # Django checks each connection as it leaves the pool (ConnectionPool.check_connection),
        # so one the server closed (a restart) is replaced instead of failing a request.
        options["pool"] = {
            "min_size": 1,
            "max_size": int(os.environ.get("DATABASE_POOL_MAX_SIZE", "8")),
            # Seconds a request waits for a pooled connection before answering 503.
            "timeout": float(os.environ.get("DATABASE_POOL_TIMEOUT", "1")),
            # psycopg_pool retries a failed connection with a growing delay (1 s, 2 s, 4 s, ...)
            # for this long, then gives up until a request asks again (at once): short, so
            # every worker reconnects within about a second of the database's return.
            "reconnect_timeout": float(os.environ.get("DATABASE_POOL_RECONNECT_TIMEOUT", "1")),
        }
    # Each serving process listens for changes to clients and lockouts
    # (authservice.change_listener), so a token request for a cached client needs no
    # query. Off: every token request reads them again (one small query).
    AUTHSERVICE_PUSHED_INVALIDATION = env_bool("AUTHSERVICE_PUSHED_INVALIDATION", True)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------
REDIS_URL = env_secret("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          # A frozen or unreachable Redis costs half a second, not redis-py's unbounded wait.
                          "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    # Several deployments (or test runs) may share one Redis database: each keeps its keys,
    # the authentication-failure counters included (authservice.lockouts), under its prefix.
    CACHES["default"]["KEY_PREFIX"] = os.environ.get("CACHE_KEY_PREFIX", "")
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth, i18n, static -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# User passwords keep Django's slow default; the last entry only ever hashes the
# service-generated, 256-bit client secrets (see authservice.hashers).
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "authservice.hashers.ClientSecretHasher",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Times in the admin read "2026-11-29 13:05 UTC": ISO dates, and the zone named.
FORMAT_MODULE_PATH = ["registry.formats"]

STATIC_URL = "static/"
# `manage.py collectstatic` fills it on every deployment (a system check warns until then).
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing root before collectstatic
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Token requests are small; anything bigger than this is refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 100

# --- Security -----------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 8 * 3600

SECURE_HTTPS = env_bool("DJANGO_SECURE_HTTPS", False)
if SECURE_HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    # Behind the TLS proxy, lock out by the client's address, not the proxy's.
    AXES_IPWARE_PROXY_COUNT = int(os.environ.get("AXES_PROXY_COUNT", "1"))
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# --- OAuth provider (django-oauth-toolkit) ------------------------------------------------
OAUTH2_PROVIDER_APPLICATION_MODEL = "authservice.OAuthClient"
OAUTH2_PROVIDER = {
    "OAUTH2_SERVER_CLASS": "oauthlib.oauth2.BackendApplicationServer",
    "OAUTH2_VALIDATOR_CLASS": "authservice.validator.ClientCredentialsValidator",
    "ACCESS_TOKEN_GENERATOR": "authservice.tokens.generate_access_token",
    "CLIENT_SECRET_HASHER": "client_secret_sha256",
    "SCOPES": {"registry.read": "Read the participant registry"},
    "DEFAULT_SCOPES": ["registry.read"],
    "PKCE_REQUIRED": True,
    # RFC 9700 (OAuth 2.0 Security BCP) behaviour, ahead of DOT 4.0's defaults. (Access
    # tokens are self-contained JWTs and are not stored; token lifetime is
    # AUTHSERVICE["ACCESS_TOKEN_TTL"], which the token endpoint passes to oauthlib.)
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
}

# --- This service -------------------------------------------------------------------------
def _local_issuer() -> str:
    """Without AUTHSERVICE_ISSUER: where ``make run`` listens (GUNICORN_BIND), so that a
    service started on another port announces itself there, not on port 8000."""
    host, _, port = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").rpartition(":")
    if not port.isdigit() or host.startswith("unix"):
        return "http://127.0.0.1:8000"
    every_interface = host in ("", "[::]") or (host.count(".") == 3 and not host.strip("0."))
    return f"http://{'127.0.0.1' if every_interface else host}:{port}"


_auth_failure_limit = int(os.environ.get("AUTHSERVICE_AUTH_FAILURE_LIMIT", "20"))
_auth_lockout_seconds = int(os.environ.get("AUTHSERVICE_AUTH_LOCKOUT_SECONDS", "300"))
AUTHSERVICE = {
    "ISSUER": os.environ.get("AUTHSERVICE_ISSUER") or _local_issuer(),
    "ACCESS_TOKEN_TTL": int(os.environ.get("AUTHSERVICE_ACCESS_TOKEN_TTL", "900")),
    "ACCESS_TOKEN_TYP": os.environ.get("AUTHSERVICE_ACCESS_TOKEN_TYP", "at+jwt"),
    "REGISTRY_ALLOW_HTTP_ENDPOINTS": env_bool("AUTHSERVICE_ALLOW_HTTP_ENDPOINTS", False),
    # The token endpoint's hooks: the registry decides what a participant's client is
    # granted and which keys it may sign client assertions with.
    "GRANTS_PROVIDER": "registry.oauth_hooks.participant_grants",
    "CLIENT_KEYS_PROVIDER": "registry.oauth_hooks.client_verification_keys",
    # Failed client authentication: per (client_id, address), five times as many per
    # address, within a window as long as the lockout; never per client_id alone.
    "AUTH_FAILURE_LIMIT": _auth_failure_limit,
    "AUTH_FAILURE_LIMIT_PER_ADDRESS": 5 * _auth_failure_limit,
    "AUTH_FAILURE_WINDOW": _auth_lockout_seconds,
    "AUTH_LOCKOUT_SECONDS": _auth_lockout_seconds,
    "TRUSTED_PROXIES": env_list("AUTHSERVICE_TRUSTED_PROXIES", ""),
    # The start of every lockout is an audit event in the registry's log.
    "LOCKOUT_AUDITOR": "registry.services.client_auth_lockout_record",
    # Four-eyes approval and offboarding in the registry admin (on unless "false").
    "FOUR_EYES": env_bool("AUTHSERVICE_FOUR_EYES", True),
    # Token requests per participant: the registry's cheap activity counters.
    "TOKEN_ACTIVITY_RECORDER": "registry.activity.record_token_request",
    # --- The signing app's keys (signing.conf; ACCESS_TOKEN_TTL above also says how long
    # a retired signing key stays published) ---
    "SIGNING_ALG": os.environ.get("AUTHSERVICE_SIGNING_ALG", "RS256"),
    # A comma-separated list: the first key encrypts, every key decrypts (so the
    # key-encryption key itself can be rotated). Items are trimmed and empty ones dropped
    # ("new, old" and a trailing newline mean what they look like). Unset: derived from
    # SECRET_KEY, which the system checks warn about when DEBUG is off.
    "KEY_ENCRYPTION_KEYS": [item.strip() for item in env_secret("AUTHSERVICE_KEY_ENCRYPTION_KEY").split(",")
                            if item.strip()],
    # The audit log's HMAC keys, comma-separated like the key-encryption key (the first
    # keys new links, every key verifies). Unset: derived from the key-encryption key.
    "AUDIT_KEYS": [item.strip() for item in env_secret("AUTHSERVICE_AUDIT_KEY").split(",") if item.strip()],
    # Every change to the service's signing keys lands in the registry's audit log.
    "SIGNING_KEY_EVENT_RECORDER": "registry.audit.record_signing_key_event",
}

# Text for `make run` (the default); LOG_FORMAT=json for a log pipeline. Either way each
# line carries the request id (also sent back as X-Request-ID) and never a secret.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request": {"()": "authservice.observability.RequestContextFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "authservice.observability.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["request"],
                             "formatter": "json" if LOG_FORMAT == "json" else "text"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # oauthlib logs request bodies (client secrets) at DEBUG: never let that through.
        "oauthlib": {"level": "WARNING"},
        "oauth2_provider": {"level": "WARNING"},
        # One line per request, written by the server (authservice.serve; GUNICORN_ACCESS_LOG=0: none),
        # whatever LOG_LEVEL says.
        "authservice.access": {"level": "INFO", "propagate": True},
    },
}

# /metrics is served to these addresses or networks only.
AUTHSERVICE_METRICS_ALLOWED_IPS = env_list("AUTHSERVICE_METRICS_ALLOWED_IPS", "127.0.0.1,::1")

# Per-worker caches, bounded by approximate bytes (least recently used entries leave first).
# A registry answer is ≈ 3.5 KB (body, two signatures, key): 128 MiB hold ≈ 38,000. A
# participant's client record is ≈ 6.5 KB: 768 MiB hold ≈ 120,000 clients. Both are
# ceilings, reached only when that many distinct answers or clients are asked for.
REGISTRY_CACHE_MAX_BYTES = int(os.environ.get("REGISTRY_CACHE_MAX_BYTES", str(128 * 2**20)))
AUTHSERVICE_CLIENT_CACHE_MAX_BYTES = int(os.environ.get("AUTHSERVICE_CLIENT_CACHE_MAX_BYTES", str(768 * 2**20)))

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "OCEN Participant Registry API",
    "DESCRIPTION": "The OCEN Auth Service's OAuth endpoints and the Participant Registry API: participants, "
                   "their endpoints and public keys. Every answer is signed (x-jws-signature).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "EXTENSIONS_INFO": {},
    "PREPROCESSING_HOOKS": ["registry.api.schema.registry_paths_only"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "registry.api.schema.oauth_endpoints"],
    # Enums are listed once, without a "* `X` - X" line per value repeating them.
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
}
