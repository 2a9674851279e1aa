"""The participant SDK: an ``httpx`` auth that does OCEN's request/response dance.

    tokens = TokenManager(token_url=..., client_id=..., client_secret=...)
    registry = RegistryClient(service_url, tokens)
    auth = OCENAuth(tokens=tokens, signing_key=private_key, kid=kid, registry=registry,
                    provider_participant_id=lender_id)
    with httpx.Client(auth=auth) as http:
        http.post("https://lender.example/loan-offers", content=body)

    # asyncio: the same objects, with an httpx.AsyncClient
    async with httpx.AsyncClient(auth=auth) as http:
        await http.post("https://lender.example/loan-offers", content=body)

Every request gets the Bearer token and an ``x-jws-signature`` over the exact body
(or the request target when bodyless), bound to the method, target, provider, time
and a fresh id (``ocen_sdk.wire``). Every response's signature is verified with the
provider's key from the registry and must answer this very request (its id) with
this status; a missing, bad or unbound one raises ``ResponseSignatureError`` (after
the response arrived: it must not be trusted).

``compat=True`` talks to OCEN reference providers: body-only signatures both ways,
which bind nothing but the body (see the README).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Generator

import httpx

from ocen_sdk.errors import ProviderUnknown
from ocen_sdk.jws import ALGORITHMS, JWSError, PrivateKey, VerifiedSignature, sign_detached, verify_detached
from ocen_sdk.key_loading import default_alg
from ocen_sdk.registry import RegistryClient
from ocen_sdk.tokens import TokenManager
from ocen_sdk.wire import (
    ALTERNATE_SIGNATURE_HEADER,
    REQUEST_BINDING,
    RESPONSE_BINDING,
    SIGNATURE_HEADER,
    fresh,
    request_binding,
    signed_payload,
)


class ResponseSignatureError(JWSError):
    """The provider's response is unsigned or its signature does not verify."""

    code = "ERR_RESPONSE_SIGNATURE"

    def __init__(self, message: str, response: httpx.Response | None = None, cause: JWSError | None = None):
        super().__init__(message)
        self.response = response
        self.cause = cause


def request_target(request: httpx.Request) -> str:
    target = request.url.raw_path.decode("ascii")
    return target


def provider_audience(participant_id: str) -> str:
    return f"urn:ocen:participant:{participant_id}"


class OCENAuth(httpx.Auth):
    requires_response_body = True

    def __init__(self, *, tokens: TokenManager, signing_key: PrivateKey, kid: str | None,
                 registry: RegistryClient, provider_participant_id: str, alg: str | None = None,
                 verify_responses: bool = True, compat: bool = False, response_max_age: float = 300,
                 clock_skew: float = 30) -> None:
        self.tokens, self.signing_key, self.kid = tokens, signing_key, kid
        self.alg = alg or default_alg(signing_key)
        self.registry, self.provider_participant_id = registry, provider_participant_id
        self.verify_responses, self.compat = verify_responses, compat
        self.response_max_age, self.clock_skew = response_max_age, clock_skew

    def sign(self, request: httpx.Request) -> str:
        """Sign the request; returns the header value and records its id on the request."""
        payload = signed_payload(request.content, request_target(request))
        if self.compat:
            return sign_detached(payload, self.signing_key, alg=self.alg, kid=self.kid)
        binding = request_binding(method=request.method, target=request_target(request),
                                  audience=provider_audience(self.provider_participant_id), now=time.time())
        request.extensions["ocen_request_id"] = binding["jti"]
        return sign_detached(payload, self.signing_key, alg=self.alg, kid=self.kid, extra_header=binding,
                             critical=REQUEST_BINDING)

    def _check_provider(self, provider) -> None:
        if provider is None or not provider.is_approved:
            state = "not in the registry" if provider is None else provider.status.lower()
            raise ProviderUnknown(f"provider {self.provider_participant_id} is {state}: nothing was sent")

    def _prepare(self, request: httpx.Request, token: str) -> httpx.Request:
        request.headers["Authorization"] = f"Bearer {token}"
        request.headers[SIGNATURE_HEADER] = self.sign(request)
        return request

    @staticmethod
    def _token_refused(response: httpx.Response) -> bool:
        # The token may have been revoked or the service rotated keys: one fresh try,
        # signed anew (a new id: the provider may have seen the first one).
        return response.status_code == 401 and "invalid_token" in response.text

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._check_provider(self.registry.participant(self.provider_participant_id))
        response = yield self._prepare(request, self.tokens.get())
        if self._token_refused(response):
            self.tokens.invalidate()
            response = yield self._prepare(request, self.tokens.get())
        if self.verify_responses:
            self.verify_response(response)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The same for ``httpx.AsyncClient``: registry lookups and token refreshes never block the loop."""
        # httpx reads bodies for an overridden async flow only when asked to.
        self._check_provider(await self.registry.aparticipant(self.provider_participant_id))
        await request.aread()
        response = yield self._prepare(request, await self.tokens.aget())
        await response.aread()
        if self._token_refused(response):
            self.tokens.invalidate()
            response = yield self._prepare(request, await self.tokens.aget())
            await response.aread()
        if self.verify_responses:
            await self.averify_response(response)

    def verify_response(self, response: httpx.Response) -> VerifiedSignature:
        """The response is signed by the provider, for this request, with this status, recently."""
        return self._verify_response(response, self.registry.resolver(self.provider_participant_id))

    async def averify_response(self, response: httpx.Response) -> VerifiedSignature:
        signature = self._signature(response)
        return self._verify_response(response, await self.registry.aresolve(self.provider_participant_id,
                                                                            signature))

    @staticmethod
    def _signature(response: httpx.Response) -> str:
        signature = response.headers.get(SIGNATURE_HEADER) or response.headers.get(ALTERNATE_SIGNATURE_HEADER)
        if not signature:
            raise ResponseSignatureError("the provider's response is not signed", response)
        return signature

    def _verify_response(self, response: httpx.Response, resolve) -> VerifiedSignature:
        try:
            verified = verify_detached(self._signature(response), response.content, resolve,
                                       algorithms=ALGORITHMS, understood=RESPONSE_BINDING)
        except JWSError as exc:
            if isinstance(exc, ResponseSignatureError):
                raise
            raise ResponseSignatureError(f"the provider's response signature is invalid: {exc}", response,
                                         exc) from exc
        if self.compat:
            return verified
        header, request_id = verified.header, response.request.extensions.get("ocen_request_id")
        if header.get("irt") != request_id:
            if response.status_code >= 400 and "irt" not in header:
                # Most often a provider that signs its refusals over the body alone: say what
                # it answered (unverified: nothing binds that answer to this request).
                raise ResponseSignatureError(f"the provider refused the request with HTTP {response.status_code}"
                                             f"{_refusal(response)}; unverified: the answer's signature does not "
                                             "name this request", response)
            raise ResponseSignatureError("the response is signed for another request (replayed or mixed up)",
                                         response)
        if header.get("hts") != response.status_code:
            raise ResponseSignatureError(f"the response is signed for status {header.get('hts')!r}, but arrived "
                                         f"as {response.status_code}", response)
        if not fresh(header.get("iat"), max_age=self.response_max_age, skew=self.clock_skew):
            raise ResponseSignatureError("the response signature is stale", response)
        return verified


def _refusal(response: httpx.Response) -> str:
    """`` (ERR_X: description)`` from an OAuth-style error body, if it has one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    code, text = body.get("code") or body.get("error"), body.get("error_description") or body.get("detail")
    return f" ({code}: {text})" if code and text else (f" ({code})" if code else "")
