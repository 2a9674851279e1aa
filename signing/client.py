"""The participant SDK: an ``httpx`` auth that does OCEN's request/response dance.

    tokens = TokenManager(token_url=..., client_id=..., client_secret=...)
    registry = RegistryClient(service_url, tokens)
    auth = OCENAuth(tokens=tokens, signing_key=private_key, kid=kid, registry=registry,
                    provider_participant_id=lender_id)
    with httpx.Client(auth=auth) as http:
        http.post("https://lender.example/loan-offers", content=body)

Every request gets the Bearer token and an ``x-jws-signature`` over the exact body
(or the request target when bodyless); every response's signature is verified with
the provider's key from the registry, and a missing or bad one raises
``ResponseSignatureError`` (after the response arrived: it must not be trusted).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx

from signing.http import ALTERNATE_SIGNATURE_HEADER, SIGNATURE_HEADER, signed_payload
from signing.jws import ALGORITHMS, JWSError, PrivateKey, sign_detached, verify_detached
from signing.key_loading import default_alg
from signing.remote import RegistryClient, TokenManager


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


class OCENAuth(httpx.Auth):
    requires_response_body = True

    def __init__(self, *, tokens: TokenManager, signing_key: PrivateKey, kid: str | None,
                 registry: RegistryClient, provider_participant_id: str, alg: str | None = None,
                 verify_responses: bool = True) -> None:
        self.tokens, self.signing_key, self.kid = tokens, signing_key, kid
        self.alg = alg or default_alg(signing_key)
        self.registry, self.provider_participant_id = registry, provider_participant_id
        self.verify_responses = verify_responses

    def sign(self, request: httpx.Request) -> str:
        payload = signed_payload(request.content, request_target(request))
        return sign_detached(payload, self.signing_key, alg=self.alg, kid=self.kid)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.tokens.get()}"
        request.headers[SIGNATURE_HEADER] = self.sign(request)
        response = yield request
        if response.status_code == 401 and "invalid_token" in response.text:
            # The token may have been revoked or the service rotated keys: one fresh try.
            self.tokens.invalidate()
            request.headers["Authorization"] = f"Bearer {self.tokens.get()}"
            response = yield request
        if self.verify_responses:
            self.verify_response(response)

    def verify_response(self, response: httpx.Response) -> Any:
        signature = response.headers.get(SIGNATURE_HEADER) or response.headers.get(ALTERNATE_SIGNATURE_HEADER)
        if not signature:
            raise ResponseSignatureError("the provider's response is not signed", response)
        try:
            return verify_detached(signature, response.content, self.registry.resolver(self.provider_participant_id),
                                   algorithms=ALGORITHMS)
        except JWSError as exc:
            raise ResponseSignatureError(f"the provider's response signature is invalid: {exc}", response,
                                         exc) from exc
