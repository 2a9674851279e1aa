"""Provider side, for a participant's Django API: validate the caller's access token,
its standing in the registry and its request signature; sign every response.

    MIDDLEWARE = [..., "signing.provider.OCENProviderMiddleware"]
    OCEN_PROVIDER = {
        "ISSUER": "https://auth.example",               # the Auth Service
        "AUDIENCE": "urn:ocen:participant:<your id>",   # tokens and signatures must name you
        "REGISTRY_URL": "https://auth.example",         # where the registry API lives
        "CLIENT_ID": "...", "CLIENT_SECRET": "...",     # your credentials, to read the registry
        "SIGNING_KEY": "-----BEGIN PRIVATE KEY-----...",  # PEM or JWK; or SIGNING_KEY_FILE
        "KID": "...",                                    # your registered key's kid
        "PATH_PREFIXES": ["/api/"],
    }

A request is accepted once, at the method, target and provider it was signed for,
within REPLAY_WINDOW seconds of its signing (``signing.http`` has the wire
contract), from a caller the registry shows APPROVED whose token is not older than
its tokens-not-before; the caller's record is revalidated at most STATUS_MAX_AGE
seconds apart. Failures answer 401 (403 for a caller that is not approved) with
JSON naming what failed and a stable ``code``; never a 500. ``request.ocen``
carries the verified caller. ``OCENAuthentication`` does the same for DRF views.

``ALLOW_B64_WITHOUT_CRIT`` is OCEN reference compatibility (see the README): it also
accepts signatures over the body alone, which bind nothing but the body.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from signing.http import (
    ALTERNATE_SIGNATURE_HEADER,
    MAX_JTI_LENGTH,
    REQUEST_BINDING,
    RESPONSE_BINDING,
    SIGNATURE_HEADER,
    fresh,
    is_bound,
    response_binding,
    signed_payload,
)
from signing.jws import (
    ALGORITHMS,
    JWSError,
    MalformedSignature,
    VerifiedSignature,
    b64url_decode,
    parse_json_object,
    sign_detached,
    verify_detached,
)
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
    # OCEN reference compatibility: accept b64:false without crit, "kid": null, an
    # unknown kid (every active key of the caller is tried), and body-only signatures.
    "ALLOW_B64_WITHOUT_CRIT": False,
    "LEEWAY": 30,
    # A signed request is accepted within this many seconds of its iat (plus LEEWAY of
    # clock skew), once: its id is remembered that long.
    "REPLAY_WINDOW": 300,
    # How stale the caller's registry record (status, tokens-not-before, keys) may be.
    "STATUS_MAX_AGE": 30,
    # A signed registry answer older than this is refused (replay of an old key set).
    "REGISTRY_RESPONSE_MAX_AGE": 120,
    "VERIFY_REGISTRY_SIGNATURES": True,
    # Where used request ids live: a callable(key, ttl_seconds) -> bool (True the first
    # time), or its dotted path. The default uses the Django cache REPLAY_CACHE, which
    # must be shared by every worker and instance (Redis, or Django's DatabaseCache).
    "REPLAY_STORE": "signing.provider.cache_replay_store",
    "REPLAY_CACHE": "default",
}


def cache_replay_store(key: str, ttl: int) -> bool:
    """Remember ``key`` for ``ttl`` seconds; True the first time (an atomic cache add)."""
    alias = (getattr(settings, "OCEN_PROVIDER", {}) or {}).get("REPLAY_CACHE", "default")
    return caches[alias].add(f"ocen-replay:{key}", 1, timeout=ttl)


class ProviderAuthError(Exception):
    """The caller's token, standing or signature was refused."""

    def __init__(self, error: str, description: str, code: str, status: int = 401) -> None:
        super().__init__(description)
        self.error, self.description, self.code, self.status = error, description, code, status

    def response(self) -> JsonResponse:
        response = JsonResponse({"error": self.error, "error_description": self.description, "code": self.code},
                                status=self.status)
        response["WWW-Authenticate"] = f'Bearer error="{self.error}"'
        return response


def _signature_refused(description: str, code: str) -> ProviderAuthError:
    return ProviderAuthError("invalid_signature", description, code)


@dataclass(frozen=True)
class Caller:
    token: VerifiedToken
    signature: VerifiedSignature = field(repr=False)
    is_authenticated: bool = True

    @property
    def participant_id(self) -> str:
        return self.token.participant_id

    @property
    def request_id(self) -> str | None:
        """The request signature's jti (strict mode), which the response signature echoes."""
        jti = self.signature.header.get("jti")
        return jti if isinstance(jti, str) else None


class ProviderGuard:
    """The framework-agnostic core: verify one request, sign one response."""

    def __init__(self, config: dict[str, Any], *, http: httpx.Client | None = None,
                 replay_store: Callable[[str, int], bool] | None = None) -> None:
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown OCEN_PROVIDER settings: {', '.join(sorted(unknown))}")
        self.config = {**DEFAULTS, **config}
        missing = [name for name in ("ISSUER", "AUDIENCE", "CLIENT_ID") if not self.config[name]]
        if missing:
            raise ValueError(f"OCEN_PROVIDER needs {', '.join(missing)}")
        self.compat = bool(self.config["ALLOW_B64_WITHOUT_CRIT"])
        store = replay_store or self.config["REPLAY_STORE"]
        self.replay_store = import_string(store) if isinstance(store, str) else store
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
            revalidate_after=self.config["STATUS_MAX_AGE"], max_response_age=self.config["REGISTRY_RESPONSE_MAX_AGE"],
            clock_skew=self.config["LEEWAY"])
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

    def verify_request(self, *, authorization: str, signature: str | None, body: bytes, target: str,
                       method: str = "POST", alternate_signature: str | None = None) -> Caller:
        """Token, caller's standing, signature, binding, replay: in that order, and the
        request id is used up only when everything else passed."""
        verified_token = self._verify_token(authorization)
        self._check_standing(verified_token)
        signature = self._one_signature(signature, alternate_signature)
        try:
            verified = verify_detached(
                signature, signed_payload(body, target),
                self.registry.resolver(verified_token.participant_id, any_key_for_unknown_kid=self.compat),
                algorithms=self.config["ALGORITHMS"], understood=REQUEST_BINDING,
                allow_b64_without_crit=self.compat)
        except JWSError as exc:
            raise _signature_refused(f"request signature: {exc}", exc.code) from exc
        except RegistryError as exc:
            raise _signature_refused(f"caller's keys unavailable: {exc}", "ERR_REGISTRY") from exc
        replay_key = self._check_binding(verified, method=method, target=target,
                                         participant_id=verified_token.participant_id, signature=signature)
        window = int(self.config["REPLAY_WINDOW"] + self.config["LEEWAY"])
        if not self.replay_store(replay_key, window):
            raise _signature_refused("this signed request was accepted before (replay)", "ERR_SIG_REPLAYED")
        return Caller(token=verified_token, signature=verified)

    def _verify_token(self, authorization: str) -> VerifiedToken:
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
        if not isinstance(verified_token.participant_id, str) or not verified_token.participant_id:
            raise ProviderAuthError("invalid_token", "the token names no participant", "ERR_NO_PARTICIPANT")
        return verified_token

    def _check_standing(self, token: VerifiedToken) -> None:
        """The caller is APPROVED in the registry and its token is not older than its
        tokens-not-before (suspension, reinstatement, "revoke all tokens")."""
        try:
            record = self.registry.participant(token.participant_id)
        except RegistryError as exc:
            raise ProviderAuthError("invalid_token", f"caller's registry record unavailable: {exc}",
                                    "ERR_REGISTRY") from exc
        if record is None:
            raise ProviderAuthError("invalid_token", "the caller is not in the registry (or was offboarded)",
                                    "ERR_CALLER_UNKNOWN")
        if not record.is_approved:
            raise ProviderAuthError("access_denied", f"the caller is {record.status.lower()} in the registry",
                                    "ERR_CALLER_NOT_APPROVED", status=403)
        issued_at = token.claims.get("iat")
        if record.tokens_not_before is not None and (
                not isinstance(issued_at, int | float) or issued_at < record.tokens_not_before):
            raise ProviderAuthError("invalid_token", "the access token was issued before the caller's tokens were "
                                    "revoked", "ERR_TOKEN_REVOKED")

    def _one_signature(self, signature: str | None, alternate: str | None) -> str:
        if signature and alternate and signature.strip() != alternate.strip():
            raise _signature_refused(f"{SIGNATURE_HEADER} and {ALTERNATE_SIGNATURE_HEADER} differ: send one",
                                     "ERR_SIG_AMBIGUOUS")
        value = signature or alternate
        if not value:
            raise _signature_refused(f"the {SIGNATURE_HEADER} header is missing", MalformedSignature.code)
        return value

    def _check_binding(self, verified: VerifiedSignature, *, method: str, target: str, participant_id: str,
                       signature: str) -> str:
        """Check what the signature says the request is; return the replay-store key."""
        header = verified.header
        if not is_bound(header, REQUEST_BINDING):
            if not self.compat:
                raise _signature_refused("the signature binds only the body; sign htm, htu, aud, iat and jti "
                                         "(critical)", "ERR_SIG_NOT_BOUND")
            # Compat: nothing but the body is bound; a byte-identical resend is a replay.
            return f"sig:{hashlib.sha256(signature.strip().encode()).hexdigest()}"
        missing = [name for name in REQUEST_BINDING if name not in header.get("crit", [])]
        if missing:
            raise _signature_refused(f"binding member {missing[0]!r} is not critical", "ERR_SIG_NOT_BOUND")
        if header.get("htm") != method.upper():
            raise _signature_refused(f"the signature is for a {header.get('htm')!r} request, not {method}",
                                     "ERR_SIG_WRONG_METHOD")
        if header.get("htu") != target:
            raise _signature_refused("the signature is for another request target", "ERR_SIG_WRONG_TARGET")
        if header.get("aud") != self.config["AUDIENCE"]:
            raise _signature_refused("the signature is addressed to another provider", "ERR_SIG_WRONG_AUDIENCE")
        if not fresh(header.get("iat"), max_age=self.config["REPLAY_WINDOW"], skew=self.config["LEEWAY"]):
            raise _signature_refused(f"the signature's iat is outside the {self.config['REPLAY_WINDOW']}s window",
                                     "ERR_SIG_STALE")
        jti = header.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise _signature_refused("the signature's jti must be a string of 1 to 128 characters",
                                     "ERR_SIG_NOT_BOUND")
        return f"jti:{participant_id}:{jti}"

    def sign_response(self, body: bytes, *, status: int = 200, request_id: str | None = None) -> str | None:
        """Sign the response body; bound to the request's id and the status when the
        request named an id (strict mode), body only otherwise (compat)."""
        if self.signing_key is None:
            return None
        if request_id is None:
            return sign_detached(body, self.signing_key, alg=self.alg, kid=self.config["KID"])
        return sign_detached(body, self.signing_key, alg=self.alg, kid=self.config["KID"],
                             extra_header=response_binding(request_jti=request_id, status=status),
                             critical=RESPONSE_BINDING)


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


def claimed_request_id(request: HttpRequest) -> str | None:
    """The jti the request's signature header claims, unverified: a refusal echoes it
    so the caller can match the (signed) refusal to its request."""
    value = request.headers.get(SIGNATURE_HEADER) or request.headers.get(ALTERNATE_SIGNATURE_HEADER) or ""
    try:
        jti = parse_json_object(b64url_decode(value.split(".", 1)[0]), "protected header").get("jti")
    except JWSError:
        return None
    return jti if isinstance(jti, str) and 0 < len(jti) <= MAX_JTI_LENGTH else None


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
        return sign_django_response(guard, exc.response(), claimed_request_id(request))
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
            caller = getattr(request, "ocen", None)
            sign_django_response(guard, response, caller.request_id if caller else claimed_request_id(request))
        return response

