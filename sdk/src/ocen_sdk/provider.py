"""Provider side: validate the caller's access token, its standing in the registry
and its request signature; sign every response. No web framework here:
``ProviderGuard.verify_request`` takes the request's parts (any WSGI/ASGI app, FastAPI),
``ocen_sdk.django`` wraps it as Django middleware, a view decorator and DRF auth.

    MIDDLEWARE = [..., "ocen_sdk.django.OCENProviderMiddleware"]
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
within REPLAY_WINDOW seconds of its signing (``ocen_sdk.wire`` has the wire
contract), from a caller the registry shows APPROVED whose token is not older than
its tokens-not-before; the caller's record is revalidated at most STATUS_MAX_AGE
seconds apart. Failures answer 401 (403 for a caller that is not approved) with
JSON naming what failed and a stable ``code``; never a 500. ``request.ocen``
carries the verified caller. ``OCENAuthentication`` does the same for DRF views.

``ALLOW_B64_WITHOUT_CRIT`` is OCEN reference compatibility (see the README): it also
accepts signatures over the body alone, which bind nothing but the body. A duplicate of
such a request within the replay window is answered with the response kept from the
first time (``RESPONSE_STORE``), as OCEN asks of a callee; the view does not run again.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ocen_sdk.errors import RegistryError
from ocen_sdk.jws import (
    ALGORITHMS,
    JWSError,
    MalformedSignature,
    VerifiedSignature,
    b64url_decode,
    b64url_encode,
    claim_audiences,
    parse_json_object,
    sign_detached,
    verify_detached,
)
from ocen_sdk.key_loading import default_alg, load_private_key
from ocen_sdk.registry import REGISTRY_AUDIENCE, ParticipantRecord, RegistryClient
from ocen_sdk.service_keys import AccessTokenVerifier, ServiceKeys, VerifiedToken
from ocen_sdk.tokens import TokenManager
from ocen_sdk.wire import (
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

logger = logging.getLogger(__name__)

# The registry's scopes, granted at the registry's audience only.
REGISTRY_SCOPE_NAMESPACE = "registry."

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
    # time), or its dotted path. It must be shared by every worker and instance of the
    # provider (Redis, a database). The Django layer (ocen_sdk.django) defaults to the
    # Django cache REPLAY_CACHE.
    "REPLAY_STORE": None,
    "REPLAY_CACHE": "default",
    # The Django layer refuses a REPLAY_CACHE that is per process or keeps nothing
    # (LocMemCache, DummyCache, FileBasedCache) unless this says the provider runs as
    # one process (a development server).
    "REPLAY_CACHE_SINGLE_PROCESS_OK": False,
    # Compat mode: where the first response to a body-only signed request is kept for
    # the replay window, so a duplicate gets it again. An object with get(key) -> bytes
    # or None and set(key, value: bytes, ttl), or its dotted path, shared like
    # REPLAY_STORE. The Django layer defaults to the Django cache REPLAY_CACHE. Unset
    # (outside Django), duplicates are refused as replays.
    "RESPONSE_STORE": None,
}
# What a kept response carries besides its status and body.
RECORDED_HEADERS = ("Content-Type", "Content-Language", "Location", "Retry-After", SIGNATURE_HEADER)


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class MemoryReplayStore:
    """A replay store for ONE process (tests, a single-process server): used ids are
    forgotten after their ttl. Never use it behind several workers or instances."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, ttl: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._until) > 100_000:
                self._until = {k: until for k, until in self._until.items() if until > now}
            if self._until.get(key, 0) > now:
                return False
            self._until[key] = now + ttl
            return True


class MemoryResponseStore:
    """A response store for ONE process (tests, a single-process server), like
    ``MemoryReplayStore``."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            until, value = self._kept.get(key, (0.0, b""))
            return value if until > time.monotonic() else None

    def set(self, key: str, value: bytes, ttl: int) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._kept) > 10_000:
                self._kept = {k: kept for k, kept in self._kept.items() if kept[0] > now}
            self._kept[key] = (now + ttl, value)


@dataclass(frozen=True)
class RecordedResponse:
    """The response a provider sent to a compat-mode request, kept for its duplicates."""

    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)
    # The request it answered, "METHOD target": a duplicate elsewhere is a replay.
    request: str = ""

    def to_bytes(self) -> bytes:
        return json.dumps({"status": self.status, "headers": self.headers, "request": self.request,
                           "body": base64.b64encode(self.body).decode("ascii")}).encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> RecordedResponse | None:
        try:
            kept = json.loads(raw)
            return cls(status=int(kept["status"]), headers={str(k): str(v) for k, v in kept["headers"].items()},
                       body=base64.b64decode(kept["body"], validate=True), request=str(kept["request"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class ProviderAuthError(Exception):
    """The caller's token, standing or signature was refused."""

    def __init__(self, error: str, description: str, code: str, status: int = 401) -> None:
        super().__init__(description)
        self.error, self.description, self.code, self.status = error, description, code, status

    def as_json(self) -> dict[str, str]:
        """The refusal's body: ``{"error", "error_description", "code"}``."""
        return {"error": self.error, "error_description": self.description, "code": self.code}

    @property
    def www_authenticate(self) -> str:
        return f'Bearer error="{self.error}"'


def _signature_refused(description: str, code: str) -> ProviderAuthError:
    return ProviderAuthError("invalid_signature", description, code)


class DuplicateRequest(ProviderAuthError):
    """Compat mode: this body-only signed request was accepted before, within the replay
    window. ``response`` is the response sent the first time, to be sent again as it is;
    None while the first is still being answered (then this is a 409 to retry later)."""

    def __init__(self, response: RecordedResponse | None) -> None:
        super().__init__("invalid_signature", "this signed request is being answered: retry in a moment",
                         "ERR_SIG_DUPLICATE_IN_PROGRESS", status=409)
        self.response = response


@dataclass(frozen=True)
class Caller:
    token: VerifiedToken
    signature: VerifiedSignature = field(repr=False)
    is_authenticated: bool = True
    # Compat mode, a body-only signature: the key its response is kept under
    # (``ProviderGuard.record_response``) and the request it came as ("METHOD target");
    # None otherwise.
    duplicate_key: str | None = None
    duplicate_of: str | None = None

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
                 async_http: httpx.AsyncClient | None = None,
                 replay_store: Callable[[str, int], bool] | None = None, response_store: Any = None) -> None:
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown OCEN_PROVIDER settings: {', '.join(sorted(unknown))}")
        self.config = {**DEFAULTS, **config}
        missing = [name for name in ("ISSUER", "AUDIENCE", "CLIENT_ID") if not self.config[name]]
        if missing:
            raise ValueError(f"OCEN_PROVIDER needs {', '.join(missing)}")
        if str(self.config["REQUIRED_SCOPE"] or "").startswith(REGISTRY_SCOPE_NAMESPACE):
            raise ValueError("OCEN_PROVIDER REQUIRED_SCOPE must be one of the provider's own scopes, not the "
                             "registry's (registry.*): those are granted at the registry only")
        self.compat = bool(self.config["ALLOW_B64_WITHOUT_CRIT"])
        store = replay_store or self.config["REPLAY_STORE"]
        if store is None:
            raise ValueError("OCEN_PROVIDER needs REPLAY_STORE: a callable(key, ttl) -> bool shared by every "
                             "worker and instance (see ocen_sdk.provider.MemoryReplayStore for one process)")
        self.replay_store = _import(store) if isinstance(store, str) else store
        responses = response_store or self.config["RESPONSE_STORE"]
        self.response_store = _import(responses) if isinstance(responses, str) else responses
        http = http or httpx.Client(timeout=10)
        self.service_keys = ServiceKeys(self.config["ISSUER"], http=http, async_http=async_http)
        self.tokens = TokenManager(
            token_url=self.config["TOKEN_URL"] or self.service_keys.metadata["token_endpoint"],
            client_id=self.config["CLIENT_ID"], client_secret=self.config["CLIENT_SECRET"],
            private_key=None if self.config["CLIENT_SECRET"] else self._signing_key(), kid=self.config["KID"],
            http=http, async_http=async_http)
        self.registry = RegistryClient(
            self.config["REGISTRY_URL"] or self.config["ISSUER"], self.tokens, http=http, async_http=async_http,
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
        token = self._bearer(authorization)
        try:
            verified_token = self._token_checks(self.token_verifier.verify(token))
        except (JWSError, RegistryError) as exc:
            raise _token_refused(exc) from exc
        self._check_standing(verified_token, lambda: self.registry.participant(verified_token.participant_id))
        signature = self._one_signature(signature, alternate_signature)
        resolve = self.registry.resolver(verified_token.participant_id, any_key_for_unknown_kid=self.compat)
        return self._accept(verified_token, signature, resolve, body=body, target=target, method=method)

    async def averify_request(self, *, authorization: str, signature: str | None, body: bytes, target: str,
                              method: str = "POST", alternate_signature: str | None = None) -> Caller:
        """``verify_request`` for asyncio apps (FastAPI, Starlette, plain ASGI): the same
        checks in the same order, with the service's keys and the caller's registry record
        fetched without blocking the event loop. The replay store is called as it is
        (keep it fast: memory, or a cache on the same host)."""
        token = self._bearer(authorization)
        try:
            verified_token = self._token_checks(await self.token_verifier.averify(token))
        except (JWSError, RegistryError) as exc:
            raise _token_refused(exc) from exc
        try:
            record = await self.registry.aparticipant(verified_token.participant_id)
        except RegistryError as exc:
            record = exc
        self._check_standing(verified_token, lambda: _value_or_raise(record))
        signature = self._one_signature(signature, alternate_signature)
        try:
            resolve = await self.registry.aresolve(verified_token.participant_id, signature,
                                                   any_key_for_unknown_kid=self.compat)
        except (JWSError, RegistryError) as exc:
            failure = exc
            # Raised where the blocking resolver would raise it: after the signature's own checks.
            resolve = lambda header: _value_or_raise(failure)  # noqa: E731
        return self._accept(verified_token, signature, resolve, body=body, target=target, method=method)

    def _accept(self, verified_token: VerifiedToken, signature: str, resolve, *, body: bytes, target: str,
                method: str) -> Caller:
        try:
            verified = verify_detached(signature, signed_payload(body, target), resolve,
                                       algorithms=self.config["ALGORITHMS"], understood=REQUEST_BINDING,
                                       allow_b64_without_crit=self.compat)
        except JWSError as exc:
            raise _signature_refused(f"request signature: {exc}", exc.code) from exc
        except RegistryError as exc:
            raise _signature_refused(f"caller's keys unavailable: {exc}", "ERR_REGISTRY") from exc
        replay_key, bound = self._check_binding(verified, method=method, target=target,
                                                participant_id=verified_token.participant_id)
        request_line = f"{method.upper()} {target}"
        if not self.replay_store(replay_key, self._remember_for(verified.header.get("iat") if bound else None)):
            if not bound and self.response_store is not None:
                recorded = self.recorded_response(replay_key)
                if recorded is None or recorded.request == request_line:
                    raise DuplicateRequest(recorded)
            # A body-only signature is used once, wherever it is sent: sent elsewhere, it is a replay.
            raise _signature_refused("this signed request was accepted before (replay)", "ERR_SIG_REPLAYED")
        if bound or self.response_store is None:
            return Caller(token=verified_token, signature=verified)
        return Caller(token=verified_token, signature=verified, duplicate_key=replay_key, duplicate_of=request_line)

    def _remember_for(self, iat: float | None) -> int:
        """How long a request id stays used: until the signature's window closes, that is
        ``iat + REPLAY_WINDOW + LEEWAY`` (an iat up to LEEWAY ahead is accepted, so from
        acceptance that may be longer than the window); from now for body-only signatures."""
        now = time.time()
        issued = max(iat, now) if iat is not None else now
        return math.ceil(issued - now + self.config["REPLAY_WINDOW"] + self.config["LEEWAY"])

    def recorded_response(self, key: str) -> RecordedResponse | None:
        """The response kept for a compat-mode request, if any."""
        raw = self.response_store.get(key) if self.response_store is not None else None
        return RecordedResponse.from_bytes(raw) if raw else None

    def record_response(self, caller: Caller, *, status: int, headers: dict[str, str], body: bytes) -> None:
        """Keep the response to a compat-mode request for its duplicates (status, the
        RECORDED_HEADERS among ``headers`` and the body, as sent); other requests: nothing."""
        if caller.duplicate_key is None or self.response_store is None:
            return
        wanted = {name.lower(): name for name in RECORDED_HEADERS}
        kept = {wanted[name.lower()]: value for name, value in headers.items() if name.lower() in wanted}
        self.response_store.set(caller.duplicate_key,
                                RecordedResponse(status=status, headers=kept, body=body,
                                                 request=caller.duplicate_of or "").to_bytes(),
                                self._remember_for(None))

    @staticmethod
    def _bearer(authorization: str) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ProviderAuthError("invalid_token", "a Bearer access token is required", "ERR_TOKEN_MISSING")
        return token.strip()

    def _token_checks(self, verified_token: VerifiedToken) -> VerifiedToken:
        # A token is for one provider (and the registry): its scopes were granted by the
        # provider it names, so one that also names another could carry that one's scopes.
        others = sorted(set(claim_audiences(verified_token.claims)) - {self.config["AUDIENCE"], REGISTRY_AUDIENCE})
        if others:
            raise ProviderAuthError("invalid_token", f"the token is also for {others[0]}: ask for one with "
                                    f"resource={self.config['AUDIENCE']}", "ERR_TOKEN_AUDIENCE")
        scope = self.config["REQUIRED_SCOPE"]
        if scope and scope not in verified_token.scopes:
            raise ProviderAuthError("insufficient_scope", f"the token lacks scope {scope}", "ERR_SCOPE")
        if not isinstance(verified_token.participant_id, str) or not verified_token.participant_id:
            raise ProviderAuthError("invalid_token", "the token names no participant", "ERR_NO_PARTICIPANT")
        return verified_token

    def _check_standing(self, token: VerifiedToken, lookup: Callable[[], ParticipantRecord | None]) -> None:
        """The caller is APPROVED in the registry and its token is not older than its
        tokens-not-before (suspension, reinstatement, "revoke all tokens")."""
        try:
            record = lookup()
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

    def _check_binding(self, verified: VerifiedSignature, *, method: str, target: str,
                       participant_id: str) -> tuple[str, bool]:
        """Check what the signature says the request is; return the replay-store key and
        whether the signature binds the request (strict) or only the body (compat)."""
        header = verified.header
        if not is_bound(header, REQUEST_BINDING):
            if not self.compat:
                raise _signature_refused("the signature binds only the body; sign htm, htu, aud, iat and jti "
                                         "(critical)", "ERR_SIG_NOT_BOUND")
            # Compat: nothing but the body is bound. The same signed message again, however
            # its signature is re-encoded (the value is normalised), is a duplicate if it is
            # the same request (``_accept``), a replay if it is sent elsewhere.
            message = "\n".join([participant_id, verified.encoded_header, hashlib.sha256(verified.payload).hexdigest(),
                                 b64url_encode(verified.signature)])
            return f"msg:{hashlib.sha256(message.encode('utf-8')).hexdigest()}", False
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
        return f"jti:{participant_id}:{jti}", True

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


def _token_refused(exc: JWSError | RegistryError) -> ProviderAuthError:
    code = exc.code if isinstance(exc, JWSError) else "ERR_REGISTRY"
    return ProviderAuthError("invalid_token", f"access token: {exc}", code)


def _value_or_raise(value: Any) -> Any:
    if isinstance(value, BaseException):
        raise value
    return value


def claimed_request_id(signature_header_value: str | None) -> str | None:
    """The jti a request's signature header claims, unverified: a refusal echoes it so
    the caller can match the (signed) refusal to its request."""
    try:
        jti = parse_json_object(b64url_decode((signature_header_value or "").split(".", 1)[0]),
                                "protected header").get("jti")
    except JWSError:
        return None
    return jti if isinstance(jti, str) and 0 < len(jti) <= MAX_JTI_LENGTH else None
