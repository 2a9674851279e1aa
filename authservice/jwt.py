"""Compact JWS encoding and verification for the service's own access tokens.

The token endpoint and every resource server check sit on this path, so it avoids
re-parsing keys per call: keys arrive as loaded ``cryptography`` objects bound to one
algorithm each. The cryptographic operations are ``cryptography``'s; this module only
does the JOSE framing (RFC 7515 compact serialisation) and the algorithm pinning.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

MAX_TOKEN_LENGTH = 16 * 1024


class TokenError(Exception):
    """A token failed validation. ``code`` is stable; the message is for humans."""

    code = "invalid_token"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(data: str) -> bytes:
    if not isinstance(data, str) or any(c in data for c in "=+/ \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


@dataclass(frozen=True)
class PrivateSigningKey:
    """A private key bound to one JWS algorithm and one ``kid``."""

    kid: str
    alg: str
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def sign(self, data: bytes) -> bytes:
        if self.alg == "RS256":
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if self.alg == "ES256":
            r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        raise ValueError(f"unsupported algorithm {self.alg}")


@dataclass(frozen=True)
class PublicVerificationKey:
    """A public key bound to one JWS algorithm and one ``kid``."""

    kid: str
    alg: str
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise ``InvalidSignature`` unless ``signature`` is valid over ``data``."""
        if self.alg == "RS256":
            self.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return
        if self.alg == "ES256":
            if len(signature) != 64:
                raise InvalidSignature()
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            self.key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return
        raise InvalidSignature()


def _json_segment(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":"), sort_keys=False).encode())


def encode(header: dict[str, Any], claims: dict[str, Any], key: PrivateSigningKey) -> str:
    header = {**header, "alg": key.alg, "kid": key.kid}
    signing_input = f"{_json_segment(header)}.{_json_segment(claims)}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode('ascii')))}"


def peek_kid(token: str) -> str | None:
    """The unverified ``kid`` of a compact JWS, for picking a key set to refresh."""
    try:
        kid = json.loads(b64url_decode(token.split(".", 1)[0])).get("kid")
    except (ValueError, AttributeError, binascii.Error, UnicodeDecodeError):
        return None
    return kid if isinstance(kid, str) else None


def decode_verified(
    token: str, keys: dict[str, PublicVerificationKey], *, typ: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact JWS against ``keys`` (by ``kid``) and return (header, claims).

    The algorithm is the key's own: a header naming any other one is refused, so
    ``none``, HMAC and algorithm-confusion tricks never reach the crypto.
    Claims (exp, iss, aud, ...) are the caller's to check.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("token is missing or too long", "malformed")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("token is not a compact JWS", "malformed")
    try:
        header = json.loads(b64url_decode(parts[0]))
        signature = b64url_decode(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise TokenError("token is not valid base64url JSON", "malformed") from exc
    if not isinstance(header, dict):
        raise TokenError("token header is not a JSON object", "malformed")
    if header.get("typ") != typ:
        raise TokenError(f"token type must be {typ}", "wrong_type")
    if header.get("crit") is not None:
        raise TokenError("token header carries critical extensions", "malformed")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenError("token is signed with an unknown key", "unknown_key")
    if header.get("alg") != key.alg:
        raise TokenError("token algorithm does not match its key", "alg_not_allowed")
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
    except (InvalidSignature, ValueError) as exc:
        raise TokenError("token signature is invalid", "bad_signature") from exc
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise TokenError("token claims are not valid base64url JSON", "malformed") from exc
    if not isinstance(claims, dict):
        raise TokenError("token claims are not a JSON object", "malformed")
    return header, claims
