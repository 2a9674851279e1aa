"""The provider checks for a participant's Django API, on ``ocen_sdk.provider.ProviderGuard``.

    MIDDLEWARE = [..., "ocen_sdk.django.OCENProviderMiddleware"]
    OCEN_PROVIDER = {...}      # see ocen_sdk.provider.DEFAULTS and the README

or ``@ocen_protected`` on a view, or ``OCENAuthentication`` in DRF (with
``ResponseSigningMiddleware`` to sign responses). Needs Django (``pip install
ocen-sdk[django]``); the rest of the SDK does not.
"""

from __future__ import annotations

import logging
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ocen_sdk.http import ALTERNATE_SIGNATURE_HEADER, SIGNATURE_HEADER
from ocen_sdk.provider import Caller, ProviderAuthError, ProviderGuard, claimed_request_id

logger = logging.getLogger(__name__)


def cache_replay_store(key: str, ttl: int) -> bool:
    """The default replay store under Django: an atomic add in the cache REPLAY_CACHE,
    which must be shared by every worker and instance (Redis, or Django's DatabaseCache)."""
    alias = (getattr(settings, "OCEN_PROVIDER", {}) or {}).get("REPLAY_CACHE", "default")
    return caches[alias].add(f"ocen-replay:{key}", 1, timeout=ttl)


def _refusal(exc: ProviderAuthError) -> JsonResponse:
    response = JsonResponse(exc.as_json(), status=exc.status)
    response["WWW-Authenticate"] = exc.www_authenticate
    return response


def _with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return {"REPLAY_STORE": "ocen_sdk.django.cache_replay_store", **config}


_guard: ProviderGuard | None = None


def guard_from_settings() -> ProviderGuard:
    global _guard
    if _guard is None:
        _guard = ProviderGuard(_with_defaults(getattr(settings, "OCEN_PROVIDER", {})))
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
        self._guard = ProviderGuard(_with_defaults(config)) if config is not None else None

    @property
    def guard(self) -> ProviderGuard:
        return self._guard or guard_from_settings()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        guard = self.guard
        if not guard.applies_to(request.path):
            return self.get_response(request)
        return _guarded(guard, request, self.get_response)


def _guarded(guard: ProviderGuard, request: HttpRequest, respond) -> HttpResponse:
    try:
        request.ocen = verify_django_request(guard, request)
    except ProviderAuthError as exc:
        logger.info("refused request to %s: %s (%s)", request.path, exc.error, exc.code)
        return sign_django_response(guard, _refusal(exc), _claimed_request_id(request))
    return sign_django_response(guard, respond(request), request.ocen.request_id)


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
    ``ocen_sdk.django.ResponseSigningMiddleware`` to sign responses."""

    def authenticate(self, request):
        guard = guard_from_settings()
        try:
            caller = verify_django_request(guard, request._request)
        except ProviderAuthError as exc:
            raise drf_exceptions.AuthenticationFailed(
                {"error": exc.error, "error_description": exc.description, "code": exc.code}) from exc
        request._request.ocen = caller
        return caller, caller.token

    def authenticate_header(self, request) -> str:
        return 'Bearer error="invalid_token"'


class ResponseSigningMiddleware:
    """Signs the exact bytes of every response under PATH_PREFIXES."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        guard = guard_from_settings()
        if guard.applies_to(request.path):
            caller = getattr(request, "ocen", None)
            sign_django_response(guard, response, caller.request_id if caller else _claimed_request_id(request))
        return response

