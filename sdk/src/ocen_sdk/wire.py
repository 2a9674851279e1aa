"""The wire contract: what gets signed in an HTTP exchange, shared by the SDK, the
provider middleware and the registry (README, "Signature header"). Formerly
``ocen_sdk.http``, which still works.

A request signature is a detached JWS (RFC 7797, ``b64: false``) over the raw body,
or over the request target when there is no body. In strict mode its protected
header also says what the request is, DPoP-style (RFC 9449 names), and lists those
names in ``crit`` so a verifier that does not understand them refuses:

    htm  the HTTP method                       "POST"
    htu  the request target, path and query as sent (not scheme or host: proxies
         rewrite those)                        "/loan-offers?x=1"
    aud  the provider it is addressed to       "urn:ocen:participant:<id>"
    iat  when it was signed, seconds           1764411000
    jti  a unique id, at most 128 characters   "5f0c…"

A response signature binds the request it answers and its status:

    irt  the request signature's jti ("in response to")
    hts  the HTTP status code                  200
    iat  when it was signed

A registry response (signed by the service) carries ``iat`` and ``htu`` (the path
and query that was asked for), so an old or another participant's response cannot
be passed off as a fresh answer; a 304 is signed too, over its ETag.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ALTERNATE_SIGNATURE_HEADER",
    "MAX_JTI_LENGTH",
    "REGISTRY_BINDING",
    "REQUEST_BINDING",
    "RESPONSE_BINDING",
    "SIGNATURE_HEADER",
    "fresh",
    "is_bound",
    "request_binding",
    "response_binding",
    "signed_payload",
]

SIGNATURE_HEADER = "x-jws-signature"
# OCEN's prose calls it "Signature"; accepted on input, never preferred on output.
ALTERNATE_SIGNATURE_HEADER = "Signature"

REQUEST_BINDING = ("htm", "htu", "aud", "iat", "jti")
RESPONSE_BINDING = ("irt", "hts", "iat")
REGISTRY_BINDING = ("htu", "iat")
MAX_JTI_LENGTH = 128


def signed_payload(body: bytes, target: str) -> bytes:
    """The bytes a request's signature covers: the raw body, or for a bodyless
    request the request target (path and query, exactly as sent)."""
    return body if body else target.encode("utf-8")


def request_binding(*, method: str, target: str, audience: str, now: float | None = None,
                    jti: str | None = None) -> dict[str, Any]:
    """The protected-header members binding a request signature (strict mode)."""
    return {"htm": method.upper(), "htu": target, "aud": audience, "iat": int(time.time() if now is None else now),
            "jti": jti or uuid.uuid4().hex}


def response_binding(*, request_jti: str, status: int, now: float | None = None) -> dict[str, Any]:
    """The protected-header members binding a response signature to its request."""
    return {"irt": request_jti, "hts": int(status), "iat": int(time.time() if now is None else now)}


def is_bound(header: Mapping[str, Any], names: tuple[str, ...]) -> bool:
    """Whether the header claims a binding: any of ``names`` listed as critical."""
    crit = header.get("crit")
    return isinstance(crit, list) and any(name in crit for name in names)


def fresh(iat: Any, *, max_age: float, skew: float, now: float | None = None) -> bool:
    """``iat`` is a number within [now - max_age - skew, now + skew]."""
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        return False
    now = time.time() if now is None else now
    return now - max_age - skew <= iat <= now + skew
