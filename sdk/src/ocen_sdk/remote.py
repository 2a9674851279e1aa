"""Talking to the Auth Service over HTTP: access tokens, the service's keys, and the
registry's participant keys. No Django; used by the SDK and the provider middleware.

- ``TokenManager``: client_credentials tokens (client secret or private_key_jwt),
  cached until shortly before expiry, one refresh at a time; sent once more when the
  connection dropped without an answer.
- ``ServiceKeys``: the service's JWKS found through discovery, cached for its
  max-age, refetched once on an unknown kid (rate-limited).
- ``AccessTokenVerifier``: offline validation of the service's RFC 9068 tokens.
- ``RegistryClient``: participants' keys from the registry API, cached and
  revalidated with ETags; its responses' signatures are checked against the service.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from ocen_sdk._flow import TOKEN, Call, Flow, arun, run
from ocen_sdk.http import REGISTRY_BINDING, SIGNATURE_HEADER, fresh
from ocen_sdk.jws import (
    JWSError,
    KeyNotFound,
    OCENError,
    PrivateKey,
    Signer,
    VerificationKey,
    peek_header,
    sign_jwt,
    validate_claims,
    verify_detached,
    verify_jwt,
)
from ocen_sdk.key_loading import default_alg, verification_key_from_jwk

# RFC 7523 §2.2: the client_assertion_type of a private_key_jwt client assertion.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Access tokens: RFC 9068's at+jwt, or plain JWT where the service issues that for
# OCEN reference resource servers (AUTHSERVICE_ACCESS_TOKEN_TYP).
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "JWT"})
SERVICE_ALGORITHMS = ("RS256", "ES256")
MAX_AGE = re.compile(r"max-age=(\d+)")


class TokenRequestError(OCENError):
    """The token endpoint refused to issue a token (``error`` is its RFC 6749 code)."""

    code = "ERR_TOKEN_REQUEST"

    def __init__(self, status: int, error: str, description: str = "", hint: str = "") -> None:
        message = f"token request failed ({status} {error}): {description}"
        super().__init__(f"{message} {hint}".strip())
        self.status, self.error, self.description = status, error, description


class RegistryError(OCENError):
    """The registry could not be reached or answered unexpectedly."""

    code = "ERR_REGISTRY"


class RegistryUnreachable(RegistryError):
    code = "ERR_REGISTRY_UNREACHABLE"


class RegistryTokenRefused(RegistryError):
    """The registry refused the access token: most often one obtained for another
    audience (the registry needs ``resource=urn:ocen:registry``)."""

    code = "ERR_REGISTRY_TOKEN"


class ProviderUnknown(RegistryError):
    """The participant to call is not in the registry, or not APPROVED: nothing was sent."""

    code = "ERR_PROVIDER_UNKNOWN"


REGISTRY_AUDIENCE = "urn:ocen:registry"

# A connection refused, or closed or reset before any answer: the token request is sent
# once more. Never after an answer (whatever its status) or a timeout.
DROPPED_CONNECTION = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def _max_age(response: httpx.Response, default: int) -> int:
    match = MAX_AGE.search(response.headers.get("cache-control", ""))
    return int(match.group(1)) if match else default


# --- Tokens --------------------------------------------------------------------------------

class TokenManager:
    """Fetches and caches this participant's access token.

    ``get()`` from threads, ``await aget()`` from asyncio code (with ``async_http``, or an
    ``httpx.AsyncClient`` made on first use); both share the cached token.
    """

    def __init__(self, *, token_url: str, client_id: str, client_secret: str | None = None,
                 private_key: PrivateKey | None = None, kid: str | None = None, alg: str | None = None,
                 scope: str | None = None, resource: str | Sequence[str] | None = None,
                 http: httpx.Client | None = None, async_http: httpx.AsyncClient | None = None,
                 refresh_margin: int = 30) -> None:
        if (client_secret is None) == (private_key is None):
            raise ValueError("give exactly one of client_secret and private_key")
        self.token_url, self.client_id = token_url, client_id
        self.client_secret, self.private_key = client_secret, private_key
        self.kid, self.alg = kid, alg or (default_alg(private_key) if private_key is not None else None)
        self.scope, self.resource = scope, resource
        self.http = http or httpx.Client(timeout=10)
        self._async_http = async_http
        self.refresh_margin = refresh_margin
        self._lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    @property
    def async_http(self) -> httpx.AsyncClient:
        if self._async_http is None:
            self._async_http = httpx.AsyncClient(timeout=10)
        return self._async_http

    def _current(self) -> str | None:
        if self._token and time.time() < self._expires_at - self.refresh_margin:
            return self._token
        return None

    def get(self) -> str:
        """A valid access token; at most one refresh runs at a time."""
        token = self._current()
        if token:
            return token
        with self._lock:
            token = self._current()
            if not token:
                token, self._expires_at = run(self._fetch_flow(), self.http)
                self._token = token
            return token

    async def aget(self) -> str:
        """``get()`` for asyncio code: at most one refresh runs at a time per event loop."""
        token = self._current()
        if token:
            return token
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        async with self._async_lock:
            token = self._current()
            if not token:
                token, self._expires_at = await arun(self._fetch_flow(), self.async_http)
                self._token = token
            return token

    def invalidate(self) -> None:
        self._token, self._expires_at = None, 0.0

    def client_assertion(self) -> str:
        """An RFC 7523 client assertion signed with the participant's registered key."""
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url, "iat": now,
                  "exp": now + 60, "jti": uuid.uuid4().hex}
        return sign_jwt(claims, Signer(key=self.private_key, alg=self.alg, kid=self.kid), typ="JWT")

    def _unreachable(self, exc: httpx.HTTPError) -> TokenRequestError:
        return TokenRequestError(0, "unreachable", f"the token endpoint {self.token_url} is unreachable: {exc}")

    def _hint(self, error: str) -> str:
        """What to check, for the errors a participant's engineer meets first."""
        if error == "invalid_client" and self.private_key is not None:
            return (f"Check that the signing key is the one registered for client {self.client_id} and that "
                    f"kid={self.kid!r} is its registered kid (or leave kid unset), and the clocks are in sync.")
        if error == "invalid_client":
            return f"Check client_id {self.client_id!r} and its secret (rotated? the participant suspended?)."
        if error in {"invalid_scope", "invalid_target"}:
            return (f"The client is granted only what its resource mappings allow; asked for scope={self.scope!r} "
                    f"resource={self.resource!r}.")
        return ""

    def _token_call(self) -> Call:
        data: dict[str, Any] = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        if self.resource:
            data["resource"] = [self.resource] if isinstance(self.resource, str) else list(self.resource)
        auth = None
        if self.private_key is not None:
            data.update({"client_assertion_type": ASSERTION_TYPE, "client_assertion": self.client_assertion()})
        else:
            auth = (self.client_id, self.client_secret)
        return Call("POST", self.token_url, data=data, auth=auth)

    def _fetch_flow(self) -> Flow[tuple[str, float]]:
        # A client_credentials request is idempotent (each answer is just another token):
        # when the connection dropped without an answer, it is sent once more, built afresh
        # (a new client assertion: the first one's jti may have been used).
        for attempt in (1, 2):
            try:
                response = yield self._token_call()
                break
            except DROPPED_CONNECTION as exc:
                if attempt == 2:
                    raise self._unreachable(exc) from exc
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from exc
        self.fetches += 1
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error", "unknown") if isinstance(body, dict) else "unknown"
            raise TokenRequestError(response.status_code, error,
                                    body.get("error_description", "") if isinstance(body, dict) else "",
                                    hint=self._hint(error))
        return body["access_token"], time.time() + float(body.get("expires_in", 60))


# --- The service's keys and its tokens ------------------------------------------------------------

class ServiceKeys:
    """The Auth Service's published keys, found through discovery."""

    def __init__(self, issuer: str, *, http: httpx.Client | None = None,
                 async_http: httpx.AsyncClient | None = None, min_refresh_interval: float = 10.0,
                 default_max_age: int = 300) -> None:
        self.issuer = issuer.rstrip("/")
        self.http = http or httpx.Client(timeout=10)
        self._async_http = async_http
        self.min_refresh_interval = min_refresh_interval
        self.default_max_age = default_max_age
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, VerificationKey] = {}
        self._expires_at = 0.0
        self._last_forced = float("-inf")
        self.fetches = 0

    @property
    def async_http(self) -> httpx.AsyncClient:
        if self._async_http is None:
            self._async_http = httpx.AsyncClient(timeout=10)
        return self._async_http

    @property
    def metadata(self) -> dict[str, Any]:
        """The service's discovery document (RFC 8414), fetched once."""
        return run(self._metadata_flow(), self.http)

    def _metadata_flow(self) -> Flow[dict[str, Any]]:
        if self._metadata is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                response = yield Call("GET", url)
            except httpx.HTTPError as exc:
                raise RegistryUnreachable(f"the Auth Service at {self.issuer} is unreachable: {exc}") from exc
            if response.status_code != 200:
                raise RegistryError(f"discovery failed with HTTP {response.status_code}")
            metadata = response.json()
            if metadata.get("issuer") != self.issuer:
                raise RegistryError(f"the discovery document at {url} names issuer {metadata.get('issuer')!r}, not "
                                    f"{self.issuer!r}: use the service's issuer URL (the service sets it with "
                                    "AUTHSERVICE_ISSUER)")
            self._metadata = metadata
        return self._metadata

    def _refresh_flow(self) -> Flow[None]:
        metadata = yield from self._metadata_flow()
        try:
            response = yield Call("GET", metadata["jwks_uri"])
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(f"the Auth Service's JWKS is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise RegistryError(f"JWKS fetch failed with HTTP {response.status_code}")
        self.fetches += 1
        keys = {}
        for data in response.json().get("keys", []):
            key = verification_key_from_jwk(data, owner="service")
            if key.kid:
                keys[key.kid] = key
        self._keys = keys
        self._expires_at = time.monotonic() + _max_age(response, self.default_max_age)

    def _resolve_flow(self, header: dict[str, Any]) -> Flow[list[VerificationKey]]:
        kid = header.get("kid")
        if time.monotonic() >= self._expires_at:
            yield from self._refresh_flow()
        if kid not in self._keys and time.monotonic() - self._last_forced >= self.min_refresh_interval:
            # An unknown kid may be a freshly rotated key: refetch once, rate-limited.
            self._last_forced = time.monotonic()
            yield from self._refresh_flow()
        key = self._keys.get(kid)
        return [key] if key else []

    def resolve(self, header: dict[str, Any]) -> list[VerificationKey]:
        """A ``ocen_sdk.jws`` resolver: the service key the header names."""
        with self._lock:
            return run(self._resolve_flow(header), self.http)

    async def aresolve(self, header: dict[str, Any]) -> list[VerificationKey]:
        return await arun(self._resolve_flow(header), self.async_http)


@dataclass(frozen=True)
class VerifiedToken:
    claims: dict[str, Any]

    @property
    def participant_id(self) -> str | None:
        return self.claims.get("participantId")

    @property
    def client_id(self) -> str | None:
        return self.claims.get("client_id")

    @property
    def scopes(self) -> set[str]:
        return set(str(self.claims.get("scope", "")).split())


class AccessTokenVerifier:
    """Offline validation of access tokens from the Auth Service.

    A caller presents the same token on every request until it expires, so a token
    that verified is remembered (by its exact text, signature included) and only its
    time window is checked again; at most ``max_cached`` tokens are kept. Whether the
    caller may still use it (status, tokens-not-before) is checked per request by
    the provider, not cached here. Raises a ``ocen_sdk.jws.JWSError`` (its ``code`` says
    what failed)."""

    def __init__(self, service_keys: ServiceKeys, *, audience: str, leeway: int = 30,
                 algorithms: Sequence[str] = SERVICE_ALGORITHMS, max_cached: int = 10_000) -> None:
        self.service_keys, self.audience, self.leeway = service_keys, audience, leeway
        self.algorithms = tuple(algorithms)
        self.max_cached = max_cached
        self._verified: dict[str, VerifiedToken] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> VerifiedToken:
        return self._cached(token) or self._verify(token, self.service_keys.resolve)

    async def averify(self, token: str) -> VerifiedToken:
        """``verify()`` for asyncio code: the service's keys are fetched without blocking."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        keys = await self.service_keys.aresolve(_header_or_empty(token))
        return self._verify(token, lambda header: keys)

    def _cached(self, token: str) -> VerifiedToken | None:
        cached = self._verified.get(token)
        if cached is not None:
            # Already verified: only the clock can have changed its validity.
            validate_claims(cached.claims, issuer=None, audience=None, leeway=self.leeway)
        return cached

    def _verify(self, token: str, resolve) -> VerifiedToken:
        verified = verify_jwt(token, resolve, algorithms=self.algorithms, typ=ACCESS_TOKEN_TYPES)
        validate_claims(verified.claims, issuer=self.service_keys.issuer, audience=self.audience,
                        leeway=self.leeway)
        result = VerifiedToken(verified.claims)
        with self._lock:
            if len(self._verified) >= self.max_cached:
                self._verified.pop(next(iter(self._verified)))  # the oldest entry
            self._verified[token] = result
        return result


def _header_or_empty(jws: str) -> dict[str, Any]:
    """The header to look keys up by; a malformed one is reported by the verification itself."""
    try:
        return peek_header(jws)
    except JWSError:
        return {}


# --- The registry -----------------------------------------------------------------------------------

APPROVED = "APPROVED"


@dataclass(frozen=True)
class ParticipantRecord:
    """One participant as the registry describes it (``/registry/v1/participants/{id}``)."""

    participant_id: str
    role: str
    status: str
    keys: tuple[VerificationKey, ...]
    endpoints: tuple[str, ...] = ()
    # Tokens issued (``iat``) before this instant, epoch seconds, are refused.
    tokens_not_before: float | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_approved(self) -> bool:
        return self.status == APPROVED

    @property
    def base_url(self) -> str | None:
        return self.endpoints[0] if self.endpoints else None


def _epoch(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise RegistryError(f"the registry sent an unreadable instant {value!r}") from exc


def _participant_record(participant_id: str, data: dict[str, Any]) -> ParticipantRecord:
    try:
        keys = tuple(verification_key_from_jwk(jwk, owner=participant_id) for jwk in data.get("keys", []))
        return ParticipantRecord(participant_id=participant_id, role=str(data["role"]), status=str(data["status"]),
                                 keys=keys, endpoints=tuple(data.get("endpoints", [])),
                                 tokens_not_before=_epoch(data.get("tokens_not_before")), data=data)
    except (KeyError, TypeError, ValueError, JWSError) as exc:
        raise RegistryError(f"the registry's record of {participant_id} is malformed: {exc}") from exc


@dataclass
class _Cached:
    etag: str | None
    record: ParticipantRecord | None  # None: unknown or offboarded
    checked_at: float
    refetched_for_kid_at: float = float("-inf")


class RegistryClient:
    """Participants from the registry API, cached and revalidated with ETags.

    A cached record is revalidated once it is ``revalidate_after`` seconds old (a 304
    costs little), so a suspension, a revoked key or a tokens-not-before change reaches
    this process within that bound. With ``service_keys``, every answer's signature is
    checked: signed by the service, for the path asked, at most
    ``max_response_age`` seconds old (so an old answer cannot be replayed).

    Every lookup has an asyncio twin (``aparticipant``, ``aparticipants``,
    ``aparticipant_keys``, ``aresolve``) sharing the same cache; it uses ``async_http``
    (or an ``httpx.AsyncClient`` made on first use) and the token manager's ``aget()``.
    """

    def __init__(self, base_url: str, tokens: TokenManager, *, http: httpx.Client | None = None,
                 async_http: httpx.AsyncClient | None = None, service_keys: ServiceKeys | None = None,
                 revalidate_after: float = 30.0, max_response_age: float = 120.0, clock_skew: float = 30.0,
                 unknown_kid_refetch_interval: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.http = http or httpx.Client(timeout=10)
        self._async_http = async_http
        self.service_keys = service_keys
        self.revalidate_after = revalidate_after
        self.max_response_age, self.clock_skew = max_response_age, clock_skew
        self.unknown_kid_refetch_interval = unknown_kid_refetch_interval
        self._cache: dict[str, _Cached] = {}
        self._pages: dict[str, tuple[str | None, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()
        self.requests = 0

    @property
    def async_http(self) -> httpx.AsyncClient:
        if self._async_http is None:
            self._async_http = httpx.AsyncClient(timeout=10)
        return self._async_http

    def _run(self, flow: Flow[Any]) -> Any:
        return run(flow, self.http, self.tokens)

    async def _arun(self, flow: Flow[Any]) -> Any:
        return await arun(flow, self.async_http, self.tokens)

    # The lookups, each written once as a flow (ocen_sdk._flow) and run either way.

    def participant(self, participant_id: str, *, revalidate: bool = False) -> ParticipantRecord | None:
        """The participant's record, or None when the registry does not know it (or it was offboarded)."""
        return self._run(self._participant_flow(participant_id, revalidate))

    async def aparticipant(self, participant_id: str, *, revalidate: bool = False) -> ParticipantRecord | None:
        return await self._arun(self._participant_flow(participant_id, revalidate))

    def participants(self, *, role: str | None = None, status: str | None = None,
                     search: str | None = None) -> list[ParticipantRecord]:
        """Every participant matching the filters (all pages), each page ETag-revalidated."""
        return self._run(self._participants_flow(role=role, status=status, search=search))

    async def aparticipants(self, *, role: str | None = None, status: str | None = None,
                            search: str | None = None) -> list[ParticipantRecord]:
        return await self._arun(self._participants_flow(role=role, status=status, search=search))

    def participant_keys(self, participant_id: str, *, revalidate: bool = False) -> list[VerificationKey]:
        """The participant's active keys; none unless it is APPROVED."""
        return self._run(self._keys_flow(participant_id, revalidate))

    async def aparticipant_keys(self, participant_id: str, *, revalidate: bool = False) -> list[VerificationKey]:
        return await self._arun(self._keys_flow(participant_id, revalidate))

    def resolver(self, participant_id: str, *, any_key_for_unknown_kid: bool = False, max_keys: int = 5):
        """A ``ocen_sdk.jws`` resolver over one participant's active keys.

        ``any_key_for_unknown_kid`` (OCEN reference compatibility): when the header names
        no kid or a kid the participant has not registered, every active key is tried
        (at most ``max_keys``), as the reference verifier ignores kid.
        """

        def resolve(header: dict[str, Any]) -> list[VerificationKey]:
            return self._run(self._resolve_flow(participant_id, header, any_key_for_unknown_kid, max_keys))

        return resolve

    async def aresolve(self, participant_id: str, signature: str, *, any_key_for_unknown_kid: bool = False,
                       max_keys: int = 5):
        """The asyncio counterpart of ``resolver()``: fetches what the signature's header
        needs first, then returns a resolver that answers from memory."""
        keys = await self._arun(self._resolve_flow(participant_id, _header_or_empty(signature),
                                                   any_key_for_unknown_kid, max_keys))
        return lambda header: keys

    def _participant_flow(self, participant_id: str, revalidate: bool) -> Flow[ParticipantRecord | None]:
        with self._lock:
            cached = self._cache.get(participant_id)
        if cached and not revalidate and time.monotonic() - cached.checked_at < self.revalidate_after:
            return cached.record
        path = f"/registry/v1/participants/{participant_id}"
        response = yield from self._get_flow(path, cached.etag if cached else None)
        if response.status_code == 304 and cached:
            cached.checked_at = time.monotonic()
            return cached.record
        if response.status_code == 404:
            self._store(participant_id, _Cached(None, None, time.monotonic()))
            return None
        record = _participant_record(participant_id, self._json(response))
        self._store(participant_id, _Cached(response.headers.get("etag"), record, time.monotonic()))
        return record

    def _participants_flow(self, **filters: str | None) -> Flow[list[ParticipantRecord]]:
        query = {name: value for name, value in filters.items() if value}
        # The keyset cursor: every page costs the same, and a crawl sees each participant once.
        path: str | None = f"/registry/v1/participants?{urlencode({**query, 'cursor': ''})}"
        records: list[ParticipantRecord] = []
        while path:
            with self._lock:
                etag, data = self._pages.get(path, (None, None))
            response = yield from self._get_flow(path, etag)
            if response.status_code != 304 or data is None:
                data = self._json(response)
                with self._lock:
                    self._pages[path] = (response.headers.get("etag"), data)
            records += [_participant_record(str(item.get("participant_id")), item) for item in data.get("results", [])]
            following = urlsplit(data.get("next") or "")
            path = (following.path + (f"?{following.query}" if following.query else "")) or None
        return records

    def _keys_flow(self, participant_id: str, revalidate: bool) -> Flow[list[VerificationKey]]:
        record = yield from self._participant_flow(participant_id, revalidate)
        return list(record.keys) if record is not None and record.is_approved else []

    def _resolve_flow(self, participant_id: str, header: dict[str, Any], any_key_for_unknown_kid: bool,
                      max_keys: int) -> Flow[list[VerificationKey]]:
        kid = header.get("kid")
        keys = yield from self._keys_flow(participant_id, False)
        if kid is not None and not any(key.kid == kid for key in keys) and self._may_refetch_for_kid(participant_id):
            keys = yield from self._keys_flow(participant_id, True)  # a key added since
        if not keys:
            raise KeyNotFound(f"participant {participant_id} has no active keys in the registry")
        matching = [key for key in keys if key.kid == kid] if kid is not None else []
        if matching:
            return matching
        if kid is None or any_key_for_unknown_kid:
            return keys[:max_keys]
        return []

    def _get_flow(self, path: str, etag: str | None) -> Flow[httpx.Response]:
        """GET a registry path: 200, 304 (when ``etag`` is given) or 404, each signature-checked."""
        token = yield TOKEN
        headers = {"Authorization": f"Bearer {token}"}
        if etag:
            headers["If-None-Match"] = etag
        try:
            response = yield Call("GET", f"{self.base_url}{path}", headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(f"the registry at {self.base_url} is unreachable: {exc}") from exc
        self.requests += 1
        if response.status_code == 401:
            self.tokens.invalidate()
            raise RegistryTokenRefused(
                f"the registry refused the access token ({response.text[:200]}); a token for the registry is "
                f"obtained with resource={REGISTRY_AUDIENCE!r} (TokenManager(..., resource=...))")
        if response.status_code == 304 and etag:
            yield from self._check_signature_flow(response, path,
                                                  payload=(response.headers.get("etag") or "").encode())
            return response
        if response.status_code not in (200, 404):
            raise RegistryError(f"registry answered HTTP {response.status_code} for {path}")
        yield from self._check_signature_flow(response, path, payload=response.content)
        return response

    def _check_signature_flow(self, response: httpx.Response, path: str, *, payload: bytes) -> Flow[None]:
        if self.service_keys is None:
            return
        signature = response.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise RegistryError("the registry's response is not signed")
        keys = yield from self.service_keys._resolve_flow(_header_or_empty(signature))
        try:
            verified = verify_detached(signature, payload, lambda header: keys, algorithms=SERVICE_ALGORITHMS,
                                       understood=REGISTRY_BINDING)
        except JWSError as exc:
            raise RegistryError(f"the registry's response signature is invalid: {exc}") from exc
        if verified.header.get("htu") != path:
            raise RegistryError("the registry's response was signed for another request")
        if not fresh(verified.header.get("iat"), max_age=self.max_response_age, skew=self.clock_skew):
            raise RegistryError(f"the registry's response is older than {self.max_response_age:.0f}s (or from the "
                                "future): refused as a possible replay")

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:
            raise RegistryError("the registry's answer is not JSON") from exc
        if not isinstance(data, dict):
            raise RegistryError("the registry's answer is not a JSON object")
        return data

    def _store(self, participant_id: str, entry: _Cached) -> None:
        with self._lock:
            previous = self._cache.get(participant_id)
            if previous is not None:
                entry.refetched_for_kid_at = previous.refetched_for_kid_at
            self._cache[participant_id] = entry

    def _may_refetch_for_kid(self, participant_id: str) -> bool:
        """At most one refetch per interval per participant for a kid not in its record."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(participant_id)
            if cached is None or now - cached.refetched_for_kid_at < self.unknown_kid_refetch_interval:
                return False
            cached.refetched_for_kid_at = now
            return True
