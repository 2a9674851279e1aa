"""RFC 9068 JWT access tokens: issuing (django-oauth-toolkit's ACCESS_TOKEN_GENERATOR
hook) and validating them offline against the service's published keys."""

import time
import uuid
from dataclasses import dataclass
from typing import Any

from authservice.conf import authservice_settings
from authservice.jwt import TokenError, decode_verified, encode, peek_kid
from authservice.keys import active_signer, key_cache

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105  (a media type, not a secret)


def generate_access_token(request, refresh_token: bool = False) -> str:
    """Build and sign the access token for an oauthlib request the validator approved.

    The validator has put the granted audiences and the client's identity claims on
    the request; the jti and expiry are left on it for ``save_bearer_token``.
    """
    signer = active_signer()
    if signer is None:
        raise RuntimeError("No active signing key: run `python manage.py bootstrap`.")
    now = int(time.time())
    client = request.client
    audiences = sorted(request.token_audiences)
    claims: dict[str, Any] = {
        "iss": authservice_settings.ISSUER,
        "sub": client.client_id,
        "aud": audiences[0] if len(audiences) == 1 else audiences,
        "client_id": client.client_id,
        "azp": client.client_id,
        "scope": " ".join(request.scopes),
        "iat": now,
        "nbf": now,
        "exp": now + int(request.expires_in),
        "jti": uuid.uuid4().hex,
        **request.token_claims,
    }
    request.access_token_claims = claims
    return encode({"typ": ACCESS_TOKEN_TYP}, claims, signer)


@dataclass(frozen=True)
class AccessToken:
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def client_id(self) -> str:
        return self.claims.get("client_id", "")

    @property
    def jti(self) -> str:
        return self.claims.get("jti", "")

    @property
    def audiences(self) -> list[str]:
        aud = self.claims.get("aud", [])
        return [aud] if isinstance(aud, str) else list(aud)

    @property
    def scopes(self) -> set[str]:
        return set(str(self.claims.get("scope", "")).split())


def validate_access_token(token: str, *, audience: str | None = None, check_time: bool = True) -> AccessToken:
    """Verify a token this service issued: signature, typ, iss, exp/nbf, and aud if given.

    Raises ``TokenError``. Validation is offline; whether the client is still active
    or the token was revoked is the caller's question.
    """
    keys = key_cache.public_keys()
    try:
        header, claims = decode_verified(token, keys, typ=ACCESS_TOKEN_TYP)
    except TokenError as exc:
        if exc.code != "unknown_key":
            raise
        keys = key_cache.public_keys(refresh_for_kid=peek_kid(token))
        header, claims = decode_verified(token, keys, typ=ACCESS_TOKEN_TYP)
    if claims.get("iss") != authservice_settings.ISSUER:
        raise TokenError("token issuer is not this service", "wrong_issuer")
    if check_time:
        now = time.time()
        leeway = authservice_settings.LEEWAY
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int | float) or now > exp + leeway:
            raise TokenError("token has expired", "expired")
        if isinstance(nbf, int | float) and now < nbf - leeway:
            raise TokenError("token is not valid yet", "not_yet_valid")
    result = AccessToken(header, claims)
    if audience is not None and audience not in result.audiences:
        raise TokenError("token is not meant for this audience", "wrong_audience")
    return result

