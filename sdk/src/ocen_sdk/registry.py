"""Participants from the registry API: ``RegistryClient`` caches each record and
revalidates it with ETags, and checks every answer's signature against the Auth
Service's keys. No Django.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from ocen_sdk._flow import TOKEN, Call, Flow, arun, run
from ocen_sdk.errors import ProviderUnknown, RegistryError, RegistryTokenRefused, RegistryUnreachable
from ocen_sdk.jws import JWSError, KeyNotFound, VerificationKey, verify_detached
from ocen_sdk.key_loading import verification_key_from_jwk
from ocen_sdk.service_keys import SERVICE_ALGORITHMS, ServiceKeys, _header_or_empty
from ocen_sdk.tokens import TokenManager
from ocen_sdk.wire import REGISTRY_BINDING, SIGNATURE_HEADER, fresh

__all__ = ["APPROVED", "REGISTRY_AUDIENCE", "ParticipantRecord", "ProviderUnknown", "RegistryClient",
           "RegistryError", "RegistryTokenRefused", "RegistryUnreachable"]

REGISTRY_AUDIENCE = "urn:ocen:registry"
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
