"""This participant's access tokens from the Auth Service: ``TokenManager`` fetches
client_credentials tokens (client secret or private_key_jwt), caches each until
shortly before it expires, runs one refresh at a time, and sends a request once more
when the connection dropped without an answer. No Django.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from ocen_sdk._flow import Call, Flow, arun, run
from ocen_sdk.errors import TokenRequestError
from ocen_sdk.jws import PrivateKey, Signer, sign_jwt
from ocen_sdk.key_loading import default_alg

__all__ = ["ASSERTION_TYPE", "DROPPED_CONNECTION", "TokenManager", "TokenRequestError"]

# RFC 7523 §2.2: the client_assertion_type of a private_key_jwt client assertion.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# A connection refused, or closed or reset before any answer: the token request is sent
# once more. Never after an answer (whatever its status) or a timeout.
DROPPED_CONNECTION = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


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
