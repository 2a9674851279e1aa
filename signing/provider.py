"""Provider side, for a participant's Django API: validate the caller's access token
and request signature, sign every response.

    MIDDLEWARE = [..., "signing.provider.OCENProviderMiddleware"]
    OCEN_PROVIDER = {
        "ISSUER": "https://auth.example",               # the Auth Service
        "AUDIENCE": "urn:ocen:participant:<your id>",   # tokens must name you
        "REGISTRY_URL": "https://auth.example",         # where the registry API lives
        "CLIENT_ID": "...", "CLIENT_SECRET": "...",     # your credentials, to read the registry
        "SIGNING_KEY": "-----BEGIN PRIVATE KEY-----...",  # PEM or JWK; or SIGNING_KEY_FILE
        "KID": "...",                                    # your registered key's kid
        "PATH_PREFIXES": ["/api/"],
    }

Failures answer 401 with JSON naming what failed (``invalid_token`` or
``invalid_signature``) and a stable ``code``; never a 500. ``request.ocen`` carries
the verified caller. ``OCENAuthentication`` does the same for DRF views.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from signing.http import ALTERNATE_SIGNATURE_HEADER, SIGNATURE_HEADER, signed_payload
from signing.jws import ALGORITHMS, JWSError, MalformedSignature, VerifiedSignature, sign_detached, verify_detached
from signing.key_loading import default_alg, load_private_key
from signing.remote import (
    AccessTokenVerifier,
    RegistryClient,
    RegistryError,
    ServiceKeys,
    TokenManager,
    VerifiedToken,
)

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "ISSUER": None,
    "AUDIENCE": None,
    "REGISTRY_URL": None,
    "TOKEN_URL": None,
    "CLIENT_ID": None,
    "CLIENT_SECRET": None,
    "SIGNING_KEY": None,
    "SIGNING_KEY_FILE": None,
    "KID": None,
    "ALG": None,
    "PATH_PREFIXES": ["/"],
    "REQUIRED_SCOPE": None,
    "ALGORITHMS": list(ALGORITHMS),
    "ALLOW_B64_WITHOUT_CRIT": False,
    "LEEWAY": 30,
    "REGISTRY_REVALIDATE_AFTER": 60,
    "VERIFY_REGISTRY_SIGNATURES": True,
}


class ProviderAuthError(Exception):
    """The caller's token or signature was refused."""

    def __init__(self, error: str, description: str, code: str) -> None:
        super().__init__(description)
        self.error, self.description, self.code = error, description, code

    def response(self) -> JsonResponse:
        response = JsonResponse({"error": self.error, "error_description": self.description, "code": self.code},
                                status=401)
        response["WWW-Authenticate"] = f'Bearer error="{self.error}"'
        return response


@dataclass(frozen=True)
class Caller:
    token: VerifiedToken
    signature: VerifiedSignature = field(repr=False)
    is_authenticated: bool = True

    @property
    def participant_id(self) -> str:
        return self.token.participant_id


class ProviderGuard:
    """The framework-agnostic core: verify one request, sign one response."""

    def __init__(self, config: dict[str, Any], *, http: httpx.Client | None = None) -> None:
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown OCEN_PROVIDER settings: {', '.join(sorted(unknown))}")
        self.config = {**DEFAULTS, **config}
        missing = [name for name in ("ISSUER", "AUDIENCE", "CLIENT_ID") if not self.config[name]]
        if missing:
            raise ValueError(f"OCEN_PROVIDER needs {', '.join(missing)}")
        http = http or httpx.Client(timeout=10)
        self.service_keys = ServiceKeys(self.config["ISSUER"], http=http)
        self.tokens = TokenManager(
            token_url=self.config["TOKEN_URL"] or self.service_keys.metadata["token_endpoint"],
            client_id=self.config["CLIENT_ID"], client_secret=self.config["CLIENT_SECRET"],
            private_key=None if self.config["CLIENT_SECRET"] else self._signing_key(), kid=self.config["KID"],
            http=http)
        self.registry = RegistryClient(
            self.config["REGISTRY_URL"] or self.config["ISSUER"], self.tokens, http=http,
            service_keys=self.service_keys if self.config["VERIFY_REGISTRY_SIGNATURES"] else None,
            revalidate_after=self.config["REGISTRY_REVALIDATE_AFTER"])
        self.token_verifier = AccessTokenVerifier(self.service_keys, audience=self.config["AUDIENCE"],
                                                  leeway=self.config["LEEWAY"])
        self.signing_key = self._signing_key()
        self.alg = self.config["ALG"] or (default_alg(self.signing_key) if self.signing_key else None)

    def _signing_key(self):
        material = self.config["SIGNING_KEY"]
        if not material and self.config["SIGNING_KEY_FILE"]:
            material = Path(self.config["SIGNING_KEY_FILE"]).read_text()
        return load_private_key(material) if material else None

    def applies_to(self, path: str) -> bool:
        return any(path.startswith(prefix) for prefix in self.config["PATH_PREFIXES"])

    def verify_request(self, *, authorization: str, signature: str | None, body: bytes, target: str) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ProviderAuthError("invalid_token", "a Bearer access token is required", "ERR_TOKEN_MISSING")
        try:
            verified_token = self.token_verifier.verify(token.strip())
        except (JWSError, RegistryError) as exc:
            code = exc.code if isinstance(exc, JWSError) else "ERR_REGISTRY"
            raise ProviderAuthError("invalid_token", f"access token: {exc}", code) from exc
        scope = self.config["REQUIRED_SCOPE"]
        if scope and scope not in verified_token.scopes:
            raise ProviderAuthError("insufficient_scope", f"the token lacks scope {scope}", "ERR_SCOPE")
        if not verified_token.participant_id:
            raise ProviderAuthError("invalid_token", "the token names no participant", "ERR_NO_PARTICIPANT")
        if not signature:
            raise ProviderAuthError("invalid_signature", f"the {SIGNATURE_HEADER} header is missing",
                                    MalformedSignature.code)
        try:
            verified_signature = verify_detached(
                signature, signed_payload(body, target), self.registry.resolver(verified_token.participant_id),
                algorithms=self.config["ALGORITHMS"],
                allow_b64_without_crit=self.config["ALLOW_B64_WITHOUT_CRIT"])
        except JWSError as exc:
            raise ProviderAuthError("invalid_signature", f"request signature: {exc}", exc.code) from exc
        except RegistryError as exc:
            raise ProviderAuthError("invalid_signature", f"caller's keys unavailable: {exc}",
                                    "ERR_REGISTRY") from exc
        return Caller(token=verified_token, signature=verified_signature)

    def sign_response(self, body: bytes) -> str | None:
        if self.signing_key is None:
            return None
        return sign_detached(body, self.signing_key, alg=self.alg, kid=self.config["KID"])


_guard: ProviderGuard | None = None


def guard_from_settings() -> ProviderGuard:
    global _guard
    if _guard is None:
        _guard = ProviderGuard(getattr(settings, "OCEN_PROVIDER", {}))
    return _guard


def _reset(*, setting: str, **kwargs) -> None:
    global _guard
    if setting == "OCEN_PROVIDER":
        _guard = None


setting_changed.connect(_reset)


def request_target(request: HttpRequest) -> str:
    # gunicorn passes the target exactly as sent; elsewhere Django rebuilds it.
    return request.META.get("RAW_URI") or request.get_full_path()


def signature_header(request: HttpRequest) -> str | None:
    return request.headers.get(SIGNATURE_HEADER) or request.headers.get(ALTERNATE_SIGNATURE_HEADER)


def verify_django_request(guard: ProviderGuard, request: HttpRequest) -> Caller:
    return guard.verify_request(authorization=request.headers.get("Authorization", ""),
                                signature=signature_header(request), body=request.body,
                                target=request_target(request))


def sign_django_response(guard: ProviderGuard, response: HttpResponse) -> HttpResponse:
    if response.streaming:
        return response
    value = guard.sign_response(response.content)
    if value:
        response[SIGNATURE_HEADER] = value
    return response


class OCENProviderMiddleware:
    """Verify token and signature of every request under PATH_PREFIXES; sign every response."""

    def __init__(self, get_response, config: dict[str, Any] | None = None) -> None:
        self.get_response = get_response
        self._guard = ProviderGuard(config) if config is not None else None

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
        return sign_django_response(guard, exc.response())
    return sign_django_response(guard, respond(request))


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
    ``signing.provider.ResponseSigningMiddleware`` to sign responses."""

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
            sign_django_response(guard, response)
        return response

