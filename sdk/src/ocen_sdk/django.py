"""The provider checks for a participant's Django API, on ``ocen_sdk.provider.ProviderGuard``.

    MIDDLEWARE = [..., "ocen_sdk.django.OCENProviderMiddleware"]
    OCEN_PROVIDER = {...}      # see ocen_sdk.provider.DEFAULTS and the README

or ``@ocen_protected`` on a view, or ``OCENAuthentication`` in DRF (with
``ResponseSigningMiddleware`` to sign responses). Needs Django (``pip install
ocen-sdk[django]``); the rest of the SDK does not.

Used request ids (and, in compat mode, the responses kept for duplicates) live in the
Django cache ``OCEN_PROVIDER["REPLAY_CACHE"]`` unless REPLAY_STORE says otherwise. It
must be shared by every worker and instance: a system check (``ocen_sdk.E001``), and
the guard when it is built, refuse one that is per process or keeps nothing
(LocMemCache, DummyCache, and FileBasedCache, shared on one host only and without an
atomic add) unless ``REPLAY_CACHE_SINGLE_PROCESS_OK`` says this is a single-process
development server. The check is registered when this module is imported; list
``"ocen_sdk.django.OCENProviderConfig"`` in INSTALLED_APPS to have ``manage.py check``
run it before anything else imports it.
"""

from __future__ import annotations

import logging
from functools import wraps
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ocen_sdk.provider import (
    Caller,
    DuplicateRequest,
    ProviderAuthError,
    ProviderGuard,
    RecordedResponse,
    claimed_request_id,
)
from ocen_sdk.wire import ALTERNATE_SIGNATURE_HEADER, SIGNATURE_HEADER

logger = logging.getLogger(__name__)


CACHE_REPLAY_STORE = "ocen_sdk.django.cache_replay_store"
CACHE_RESPONSE_STORE = "ocen_sdk.django.cache_response_store"
# Cache backends that are per process, keep nothing, or have no atomic add across processes.
UNSHARED_CACHES = (LocMemCache, DummyCache, FileBasedCache)


def _replay_cache():
    alias = (getattr(settings, "OCEN_PROVIDER", {}) or {}).get("REPLAY_CACHE", "default")
    return caches[alias]


def cache_replay_store(key: str, ttl: int) -> bool:
    """The default replay store under Django: an atomic add in the cache REPLAY_CACHE,
    which must be shared by every worker and instance (Redis, Memcached, or Django's
    DatabaseCache)."""
    return _replay_cache().add(f"ocen-replay:{key}", 1, timeout=ttl)


class CacheResponseStore:
    """The default response store under Django (compat mode): the cache REPLAY_CACHE."""

    def get(self, key: str) -> bytes | None:
        return _replay_cache().get(f"ocen-response:{key}")

    def set(self, key: str, value: bytes, ttl: int) -> None:
        _replay_cache().set(f"ocen-response:{key}", value, timeout=ttl)


cache_response_store = CacheResponseStore()


def unshared_replay_cache(config: dict[str, Any]) -> str | None:
    """Why ``config`` (an OCEN_PROVIDER) keeps used request ids or kept responses where
    another worker cannot see them, or None when it does not."""
    config = _with_defaults(config)
    uses_cache = config["REPLAY_STORE"] in (CACHE_REPLAY_STORE, cache_replay_store) or (
        config.get("ALLOW_B64_WITHOUT_CRIT") and config["RESPONSE_STORE"] in (CACHE_RESPONSE_STORE,
                                                                              cache_response_store))
    if not uses_cache or config.get("REPLAY_CACHE_SINGLE_PROCESS_OK"):
        return None
    alias = config.get("REPLAY_CACHE", "default")
    try:
        cache = caches[alias]
    except InvalidCacheBackendError:
        return f'OCEN_PROVIDER["REPLAY_CACHE"] names cache {alias!r}, which CACHES does not define.'
    if isinstance(cache, UNSHARED_CACHES):
        return (f'OCEN_PROVIDER["REPLAY_CACHE"] is cache {alias!r}, a {type(cache).__name__}: it is not shared by '
                f'every worker and instance (or keeps nothing), so a replayed signed request would be accepted by '
                f'another worker.')
    return None


def replay_cache_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check ocen_sdk.E001: the replay cache is shared by every worker and instance."""
    if not hasattr(settings, "OCEN_PROVIDER"):
        return []
    problem = unshared_replay_cache(settings.OCEN_PROVIDER or {})
    if problem is None:
        return []
    return [checks.Error(problem, id="ocen_sdk.E001", hint=(
        'Use a shared cache (Redis, Memcached, DatabaseCache) as REPLAY_CACHE, or a shared REPLAY_STORE; for '
        'a single-process development server only, set OCEN_PROVIDER["REPLAY_CACHE_SINGLE_PROCESS_OK"] = True.'))]


checks.register(replay_cache_check, checks.Tags.security, checks.Tags.caches)


class OCENProviderConfig(AppConfig):
    """Optional, in INSTALLED_APPS: loads this module (and so its system check) with the apps."""

    name = "ocen_sdk"
    label = "ocen_sdk"
    verbose_name = "OCEN provider"


def _shared_guard(config: dict[str, Any]) -> ProviderGuard:
    """The guard for ``config``, refused (ImproperlyConfigured) when its replay cache is not shared."""
    problem = unshared_replay_cache(config)
    if problem is not None:
        raise ImproperlyConfigured(f"{problem} See the system check ocen_sdk.E001.")
    return ProviderGuard(_with_defaults(config))


def _refusal(exc: ProviderAuthError) -> JsonResponse:
    response = JsonResponse(exc.as_json(), status=exc.status)
    response["WWW-Authenticate"] = exc.www_authenticate
    return response


def _with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return {"REPLAY_STORE": CACHE_REPLAY_STORE, "RESPONSE_STORE": CACHE_RESPONSE_STORE, **config}


_guard: ProviderGuard | None = None


def guard_from_settings() -> ProviderGuard:
    global _guard
    if _guard is None:
        _guard = _shared_guard(getattr(settings, "OCEN_PROVIDER", {}) or {})
    return _guard


def _reset(*, setting: str, **kwargs) -> None:
    global _guard
    if setting == "OCEN_PROVIDER":
        _guard = None


setting_changed.connect(_reset)


def request_target(request: HttpRequest) -> str:
    # Servers that pass the target exactly as sent (RAW_URI / REQUEST_URI); elsewhere Django rebuilds it.
    return request.META.get("RAW_URI") or request.get_full_path()


def _claimed_request_id(request: HttpRequest) -> str | None:
    return claimed_request_id(request.headers.get(SIGNATURE_HEADER) or request.headers.get(ALTERNATE_SIGNATURE_HEADER))


def verify_django_request(guard: ProviderGuard, request: HttpRequest) -> Caller:
    return guard.verify_request(authorization=request.headers.get("Authorization", ""),
                                signature=request.headers.get(SIGNATURE_HEADER),
                                alternate_signature=request.headers.get(ALTERNATE_SIGNATURE_HEADER),
                                body=request.body, target=request_target(request), method=request.method)


def sign_django_response(guard: ProviderGuard, response: HttpResponse, request_id: str | None) -> HttpResponse:
    if response.streaming:
        return response
    value = guard.sign_response(response.content, status=response.status_code, request_id=request_id)
    if value:
        response[SIGNATURE_HEADER] = value
    return response


class OCENProviderMiddleware:
    """Verify token and signature of every request under PATH_PREFIXES; sign every response."""

    def __init__(self, get_response, config: dict[str, Any] | None = None) -> None:
        self.get_response = get_response
        self._guard = _shared_guard(config) if config is not None else None

    @property
    def guard(self) -> ProviderGuard:
        return self._guard or guard_from_settings()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        guard = self.guard
        if not guard.applies_to(request.path):
            return self.get_response(request)
        return _guarded(guard, request, self.get_response)


def recorded_django_response(recorded: RecordedResponse) -> HttpResponse:
    """The response kept for a compat-mode request, as it was sent (signature included)."""
    response = HttpResponse(recorded.body, status=recorded.status)
    for name, value in recorded.headers.items():
        response[name] = value
    return response


def record_django_response(guard: ProviderGuard, caller: Caller, response: HttpResponse) -> None:
    """Keep a compat-mode request's (signed) response for its duplicates."""
    if caller.duplicate_key is not None and not response.streaming:
        guard.record_response(caller, status=response.status_code, headers=dict(response.items()),
                              body=response.content)


def _guarded(guard: ProviderGuard, request: HttpRequest, respond) -> HttpResponse:
    try:
        request.ocen = verify_django_request(guard, request)
    except DuplicateRequest as exc:
        if exc.response is not None:
            logger.info("answered a duplicate request to %s with the first response", request.path)
            return recorded_django_response(exc.response)
        return sign_django_response(guard, _refusal(exc), None)
    except ProviderAuthError as exc:
        logger.info("refused request to %s: %s (%s)", request.path, exc.error, exc.code)
        return sign_django_response(guard, _refusal(exc), _claimed_request_id(request))
    response = sign_django_response(guard, respond(request), request.ocen.request_id)
    record_django_response(guard, request.ocen, response)
    return response


def ocen_protected(view):
    """The middleware's checks and response signing for one view (settings OCEN_PROVIDER)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return _guarded(guard_from_settings(), request, lambda req: view(req, *args, **kwargs))

    return csrf_exempt(wrapped)


try:  # DRF is optional for providers
    from rest_framework import exceptions as drf_exceptions
    from rest_framework.authentication import BaseAuthentication
except ImportError:  # pragma: no cover - exercised only without DRF installed
    BaseAuthentication = object


class OCENAuthentication(BaseAuthentication):
    """DRF authentication: the same checks as the middleware. Pair it with the
    ``ocen_sdk.django.ResponseSigningMiddleware`` to sign responses (and, in compat
    mode, to answer a duplicate with the first response)."""

    def authenticate(self, request):
        guard = guard_from_settings()
        try:
            caller = verify_django_request(guard, request._request)
        except DuplicateRequest as exc:
            if exc.response is not None:  # the view does not run; ResponseSigningMiddleware answers
                request._request.ocen_first_response = exc.response
            raise drf_exceptions.AuthenticationFailed(
                {"error": exc.error, "error_description": exc.description, "code": exc.code}) from exc
        except ProviderAuthError as exc:
            raise drf_exceptions.AuthenticationFailed(
                {"error": exc.error, "error_description": exc.description, "code": exc.code}) from exc
        request._request.ocen = caller
        return caller, caller.token

    def authenticate_header(self, request) -> str:
        return 'Bearer error="invalid_token"'


class ResponseSigningMiddleware:
    """Signs the exact bytes of every response under PATH_PREFIXES; in compat mode keeps
    it for duplicates, and answers a duplicate with the response kept the first time."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        guard = guard_from_settings()
        if guard.applies_to(request.path):
            first = getattr(request, "ocen_first_response", None)
            if first is not None:
                return recorded_django_response(first)
            caller = getattr(request, "ocen", None)
            sign_django_response(guard, response, caller.request_id if caller else _claimed_request_id(request))
            if caller is not None:
                record_django_response(guard, caller, response)
        return response

