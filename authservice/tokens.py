"""RFC 9068 JWT access tokens: issuing (django-oauth-toolkit's ACCESS_TOKEN_GENERATOR
hook) and validating them offline against the service's published keys.

Both go through ``ocen_sdk.jws``, the project's one JOSE stack.
"""

import time
import uuid
from dataclasses import dataclass
from typing import Any

from authservice import not_before
from authservice.conf import SUPPORTED_SIGNING_ALGS, authservice_settings
from ocen_sdk.jws import claim_audiences, sign_jwt, validate_claims, verify_jwt
from signing.keys import SigningKeyUnavailable, active_signer, key_cache

# RFC 9068's media type, and plain JWT for resource servers that refuse it (Spring Security 5).
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "JWT"})


def generate_access_token(request, refresh_token: bool = False) -> str:
    """Build and sign the access token for an oauthlib request the validator approved.

    The validator has put the granted audiences and the client's identity claims on
    the request, and the client row (from the client cache) on ``request.client``.
    ``iat`` is never below the client's tokens-not-before: a token issued in the same
    second as a revocation, but after it, must not look older than it.
    """
    signer = active_signer()
    if signer is None:
        raise SigningKeyUnavailable("No active signing key: run `python manage.py bootstrap`.")
    client = request.client
    issued_at = max(int(time.time()), not_before.epoch(client) or 0)
    audiences = sorted(request.token_audiences)
    claims: dict[str, Any] = {
        "iss": authservice_settings.ISSUER,
        "sub": client.client_id,
        "aud": audiences[0] if len(audiences) == 1 else audiences,
        "client_id": client.client_id,
        "azp": client.client_id,
        "scope": " ".join(request.scopes),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(request.expires_in),
        "jti": uuid.uuid4().hex,
        **request.token_claims,
    }
    return sign_jwt(claims, signer, typ=authservice_settings.ACCESS_TOKEN_TYP)


@dataclass(frozen=True)
class AccessToken:
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def client_id(self) -> str:
        return self.claims.get("client_id", "")

    @property
    def issued_at(self) -> Any:
        """The ``iat`` claim as presented (not necessarily a number)."""
        return self.claims.get("iat")

    @property
    def jti(self) -> str:
        return self.claims.get("jti", "")

    @property
    def audiences(self) -> list[str]:
        return claim_audiences(self.claims)

    @property
    def scopes(self) -> set[str]:
        return set(str(self.claims.get("scope", "")).split())


def validate_access_token(token: str, *, audience: str | None = None) -> AccessToken:
    """Verify a token this service issued: signature, typ, iss, exp/nbf, and aud if given.

    Raises ``ocen_sdk.jws.JWSError``. Validation is offline; whether the client is
    still active or the token was revoked is the caller's question.
    """
    verified = verify_jwt(token, key_cache.resolve, algorithms=SUPPORTED_SIGNING_ALGS, typ=ACCESS_TOKEN_TYPES)
    validate_claims(verified.claims, issuer=authservice_settings.ISSUER, audience=audience,
                    leeway=authservice_settings.LEEWAY)
    return AccessToken(verified.header, verified.claims)
