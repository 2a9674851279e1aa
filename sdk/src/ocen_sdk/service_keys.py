"""The Auth Service's keys and the tokens it signs. No Django.

- ``ServiceKeys``: the service's JWKS found through discovery, cached for its
  max-age, refetched once on an unknown kid (rate-limited).
- ``AccessTokenVerifier``: offline validation of the service's RFC 9068 tokens.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ocen_sdk._flow import Call, Flow, arun, run
from ocen_sdk.errors import RegistryError, RegistryUnreachable
from ocen_sdk.jws import JWSError, VerificationKey, peek_header, validate_claims, verify_jwt
from ocen_sdk.key_loading import verification_key_from_jwk

__all__ = ["ACCESS_TOKEN_TYPES", "MAX_AGE", "SERVICE_ALGORITHMS", "AccessTokenVerifier", "ServiceKeys",
           "VerifiedToken"]

# Access tokens: RFC 9068's at+jwt, or plain JWT where the service issues that for
# OCEN reference resource servers (AUTHSERVICE_ACCESS_TOKEN_TYP).
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "JWT"})
SERVICE_ALGORITHMS = ("RS256", "ES256")
MAX_AGE = re.compile(r"max-age=(\d+)")


def _max_age(response: httpx.Response, default: int) -> int:
    match = MAX_AGE.search(response.headers.get("cache-control", ""))
    return int(match.group(1)) if match else default


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
