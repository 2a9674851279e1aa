"""The project's one JOSE stack: compact and detached JWS (RFC 7515, RFC 7797
unencoded payload) and JWTs (RFC 7519) for access tokens, client assertions,
registry responses and participant messages.

No Django here: this module works on bytes and keys. Keys come from an injected
resolver, so the same code serves the token endpoint, the registry, the provider
middleware and the participant SDK. Every verification names its algorithms.

    signature = sign_detached(body, private_key, alg="RS256", kid="k1")
    verified = verify_detached(signature, body, resolver, algorithms=["RS256"])
    token = sign_jwt(claims, signer, typ="at+jwt")
    verified = verify_jwt(token, resolver, algorithms=["RS256"], typ={"at+jwt"})

Every failure raises a ``JWSError`` subclass with a stable ``code``; nothing returns
``False``.

jwcrypto does the cryptography (its JWA algorithms over the exact signing input) and
the base64url coding. Framing and checks stay here, in one pass over the header: the
limits on untrusted input, the algorithm allow-list, key/algorithm binding, ``crit``
with the names a caller understands, and OCEN's reference participant's ``b64: false``
without ``crit`` and ``"kid": null`` (``allow_b64_without_crit``).
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto.common import base64url_decode, base64url_encode
from jwcrypto.jwa import JWA
from jwcrypto.jwk import JWK

ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
DEFAULT_ALGORITHM = "RS256"
MAX_HEADER_BYTES = 4096
MAX_SIGNATURE_BYTES = 1024
MAX_COMPACT_BYTES = 16 * 1024
# JOSE headers and claims are shallow; anything deeper is refused before it is parsed.
MAX_JSON_DEPTH = 16
UNDERSTOOD_CRITICAL = frozenset({"b64"})
# Far beyond any real NumericDate; larger integers cannot even become floats.
MAX_NUMERIC_DATE = 10**15


# --- Errors --------------------------------------------------------------------------------

class OCENError(Exception):
    """Base of every error the SDK raises. ``code`` is stable; the message says what to fix."""

    code = "ERR_OCEN"


class JWSError(OCENError):
    """Base of every signing/verification failure."""

    code = "ERR_JWS_INVALID"


class MalformedSignature(JWSError):
    code = "ERR_JWS_MALFORMED"


class HeaderTooLarge(MalformedSignature):
    code = "ERR_JWS_HEADER_TOO_LARGE"


class NotDetached(JWSError):
    code = "ERR_JWS_NOT_DETACHED"


class AlgorithmNotAllowed(JWSError):
    code = "ERR_JOSE_ALG_NOT_ALLOWED"


class UnsecuredAlgorithm(AlgorithmNotAllowed):
    code = "ERR_JOSE_ALG_NONE"


class SymmetricAlgorithm(AlgorithmNotAllowed):
    code = "ERR_JOSE_ALG_HMAC"


class UnsupportedCritical(JWSError):
    code = "ERR_JOSE_CRIT_UNSUPPORTED"


class UnencodedPayloadNotCritical(JWSError):
    code = "ERR_JWS_B64_NOT_CRITICAL"


class KeyNotFound(JWSError):
    code = "ERR_JWKS_NO_MATCHING_KEY"


class KeyAlgorithmMismatch(JWSError):
    code = "ERR_JOSE_KEY_ALG_MISMATCH"


class KeyExpired(JWSError):
    code = "ERR_JWKS_KEY_EXPIRED"


class SignatureInvalid(JWSError):
    code = "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"


class TokenInvalid(JWSError):
    """A JWT's signature is good but its type or claims are not acceptable."""

    code = "ERR_JWT_INVALID"


class TokenTypeInvalid(TokenInvalid):
    code = "ERR_JWT_TYPE"


class TokenClaimInvalid(TokenInvalid):
    code = "ERR_JWT_CLAIM_INVALID"


class TokenExpired(TokenInvalid):
    code = "ERR_JWT_EXPIRED"


class TokenNotYetValid(TokenInvalid):
    code = "ERR_JWT_NOT_YET_VALID"


class TokenWrongIssuer(TokenInvalid):
    code = "ERR_JWT_ISSUER"


class TokenWrongAudience(TokenInvalid):
    code = "ERR_JWT_AUDIENCE"


# --- Keys ------------------------------------------------------------------------------------

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class VerificationKey:
    """A public key as a resolver returns it. ``alg``, when set, binds the key to one algorithm."""

    key: PublicKey
    kid: str | None = None
    alg: str | None = None
    owner: Any = None  # e.g. the participant id, for the caller's records
    # The end of the key's validity (a certificate's notAfter), epoch seconds; checked
    # at every verification, so an expired certificate stops verifying on time.
    not_after: float | None = None


# A resolver receives the protected header and returns the candidate keys: the key
# with the header's kid, or, when there is no kid, every active key of the signer.
Resolver = Callable[[dict[str, Any]], Sequence[VerificationKey]]


@dataclass(frozen=True)
class Signer:
    """A private key bound to one algorithm and one ``kid``."""

    key: PrivateKey = field(repr=False)
    alg: str
    kid: str | None = None


@dataclass(frozen=True)
class VerifiedSignature:
    header: dict[str, Any]
    key: VerificationKey
    payload: bytes = field(repr=False, default=b"")
    # The protected header as sent and the signature value in its normal form
    # (``normalised_signature``): together with the payload they name the message,
    # whatever way its signature was re-encoded.
    encoded_header: str = field(repr=False, default="")
    signature: bytes = field(repr=False, default=b"")


@dataclass(frozen=True)
class VerifiedJWT:
    header: dict[str, Any]
    claims: dict[str, Any]
    key: VerificationKey


def _key_fits(alg: str, key: PublicKey | PrivateKey) -> bool:
    if alg in ("RS256", "PS256"):
        return isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey) and key.key_size >= 2048
    if alg == "ES256":
        return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
            key.curve, ec.SECP256R1)
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey)
    return False


class _SameKey:
    """A key by identity (pyca's public keys are unhashable), as a cache key."""

    __slots__ = ("key",)

    def __init__(self, key: PublicKey | PrivateKey) -> None:
        self.key = key

    def __hash__(self) -> int:
        return id(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SameKey) and other.key is self.key


@functools.lru_cache(maxsize=4096)
def _cached_jwk(key: _SameKey) -> JWK:
    converted = JWK.from_pyca(key.key)
    # jwcrypto rebuilds the pyca key from these numbers on first use; pyca checked them
    # when it loaded the key, and checking an RSA private key again costs 100 ms or more.
    converted.unsafe_skip_rsa_key_validation = True
    return converted


def _jwk(key: PublicKey | PrivateKey) -> JWK:
    """jwcrypto's form of a key, made once per key object."""
    return _cached_jwk(_SameKey(key))


def _raw_sign(alg: str, key: PrivateKey, data: bytes) -> bytes:
    """The signature over ``data``, the exact signing input (ES256: R || S, 32 bytes each)."""
    return JWA.signing_alg(alg).sign(_jwk(key), data)


def _raw_verify(alg: str, key: PublicKey, signature: bytes, data: bytes) -> None:
    """Raise ``InvalidSignature`` unless ``signature`` is ``key``'s over ``data``."""
    if alg == "ES256" and len(signature) != 64:  # RFC 7518 §3.4; jwcrypto would split any length in two
        raise InvalidSignature()
    JWA.signing_alg(alg).verify(_jwk(key), data, signature)


# The order of P-256, for the low-s form of an ES256 signature.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def normalised_signature(alg: str, signature: bytes) -> bytes:
    """One form per signature: for ES256 the low-s form, since (r, s) and (r, n - s)
    verify alike; other algorithms' values have one valid form already (an RSA value
    below its modulus, EdDSA's canonical S)."""
    if alg == "ES256" and len(signature) == 64:
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        s = min(s, _P256_ORDER - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signature


# --- Encoding ----------------------------------------------------------------------------------

def b64url_encode(data: bytes) -> str:
    return base64url_encode(data)


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_decode(data: str) -> bytes:
    """Decode canonical base64url without padding (RFC 7515 §2): a last character whose
    unused bits are set is refused (RFC 4648 §3.5 lets decoders refuse it; every
    conforming encoder writes them as zero), so one value has one encoding only."""
    if not isinstance(data, str) or not _BASE64URL.fullmatch(data) or len(data) % 4 == 1:
        raise MalformedSignature("not base64url")
    try:
        decoded = base64url_decode(data)
    except ValueError:  # recent jwcrypto refuses a non-canonical encoding itself
        decoded = None
    if decoded is None or b64url_encode(decoded) != data:
        raise MalformedSignature("not canonical base64url (the last character's unused bits are set)")
    return decoded


def _encode_header(header: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(header, separators=(",", ":")).encode("utf-8"))


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def _json_depth_ok(raw: bytes) -> bool:
    """True when no array/object nests deeper than MAX_JSON_DEPTH (strings skipped)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return True  # the common case, decided at C speed
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object from untrusted bytes: bounded depth, no NaN/Infinity, else MalformedSignature."""
    if not _json_depth_ok(raw):
        raise MalformedSignature(f"the {what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = _JSON.decode(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedSignature(f"the {what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise MalformedSignature(f"the {what} is not a JSON object")
    return value


# --- Signing --------------------------------------------------------------------------------------

def sign_detached(payload: bytes, key: PrivateKey, *, alg: str = DEFAULT_ALGORITHM, kid: str | None = None,
                  b64: bool = False, extra_header: dict[str, Any] | None = None,
                  critical: Sequence[str] = ()) -> str:
    """Sign ``payload`` (the exact bytes on the wire) and return ``header..signature``.

    With ``b64=False`` (the default) the payload is unencoded (RFC 7797) and the header
    carries ``b64: false`` and ``crit: ["b64"]``; with ``b64=True`` it is a standard
    RFC 7515 Appendix F detached signature. ``critical`` names members of
    ``extra_header`` a verifier must understand (they join ``crit``).
    """
    if alg not in ALGORITHMS:
        raise AlgorithmNotAllowed(f"cannot sign with {alg!r}; use one of {', '.join(ALGORITHMS)}")
    if not _key_fits(alg, key):
        raise KeyAlgorithmMismatch(f"this key cannot sign {alg}")
    header: dict[str, Any] = {"alg": alg}
    if kid:
        header["kid"] = kid
    if not b64:
        header.update({"b64": False, "crit": ["b64"]})
    if extra_header:
        header.update({k: v for k, v in extra_header.items() if k not in header})
    if critical:
        missing = [name for name in critical if name not in header]
        if missing:
            raise MalformedSignature(f"critical member {missing[0]!r} is not in the header")
        header["crit"] = [*header.get("crit", []), *critical]
    encoded_header = _encode_header(header)
    signing_input = _signing_input(encoded_header, payload, b64)
    return f"{encoded_header}..{b64url_encode(_raw_sign(alg, key, signing_input))}"


def sign_compact(payload: bytes, key: PrivateKey, *, alg: str = DEFAULT_ALGORITHM, kid: str | None = None,
                 extra_header: dict[str, Any] | None = None) -> str:
    """An ordinary (attached) compact JWS, e.g. a private_key_jwt client assertion."""
    if alg not in ALGORITHMS or not _key_fits(alg, key):
        raise KeyAlgorithmMismatch(f"this key cannot sign {alg}")
    header = {**(extra_header or {}), "alg": alg, **({"kid": kid} if kid else {})}
    signing_input = f"{_encode_header(header)}.{b64url_encode(payload)}"
    signature = _raw_sign(alg, key, signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


def sign_jwt(claims: dict[str, Any], signer: Signer, *, typ: str | None = "JWT") -> str:
    """A signed JWT (compact JWS over the JSON claims) with the signer's alg and kid."""
    header = {"typ": typ} if typ else {}
    payload = json.dumps(claims, separators=(",", ":")).encode("utf-8")
    return sign_compact(payload, signer.key, alg=signer.alg, kid=signer.kid, extra_header=header)


def _signing_input(encoded_header: str, payload: bytes, b64: bool) -> bytes:
    if b64:
        return f"{encoded_header}.{b64url_encode(payload)}".encode("ascii")
    return encoded_header.encode("ascii") + b"." + payload


# --- Verification -------------------------------------------------------------------------------------

def _parse_header(encoded: str) -> dict[str, Any]:
    if len(encoded) > MAX_HEADER_BYTES:
        raise HeaderTooLarge(f"the protected header is larger than {MAX_HEADER_BYTES} bytes")
    return parse_json_object(b64url_decode(encoded), "protected header")


def _check_algorithm(header: dict[str, Any], algorithms: Iterable[str]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise MalformedSignature("the header has no alg")
    if alg.lower() == "none":
        raise UnsecuredAlgorithm("alg 'none' is never accepted")
    if alg.upper().startswith("HS"):
        raise SymmetricAlgorithm(f"HMAC algorithm {alg} is never accepted")
    allowed = set(algorithms) & set(ALGORITHMS)
    if alg not in allowed:
        raise AlgorithmNotAllowed(f"alg {alg} is not allowed here ({', '.join(sorted(allowed))})")
    return alg


def _check_critical(header: dict[str, Any], allow_b64_without_crit: bool, understood: Collection[str] = ()) -> bool:
    """Validate ``crit`` and ``b64``; return whether the payload is base64url-encoded."""
    crit = header.get("crit")
    if crit is not None:
        if not isinstance(crit, list) or not crit or not all(isinstance(name, str) for name in crit):
            raise MalformedSignature("crit must be a non-empty list of header names")
        unknown = [name for name in crit if name not in UNDERSTOOD_CRITICAL and name not in understood]
        if unknown:
            raise UnsupportedCritical(f"critical header parameter {unknown[0]!r} is not understood")
        missing = [name for name in crit if name not in header]
        if missing:
            raise MalformedSignature(f"critical header parameter {missing[0]!r} is absent")
    b64 = header.get("b64", True)
    if not isinstance(b64, bool):
        raise MalformedSignature("b64 must be a boolean")
    if not b64 and "b64" not in (crit or []) and not allow_b64_without_crit:
        raise UnencodedPayloadNotCritical("b64: false must be listed in crit (RFC 7797 §6)")
    return b64


def _verify_with(alg: str, header: dict[str, Any], candidates: Sequence[VerificationKey], signature: bytes,
                 signing_input: bytes, payload: bytes, encoded_header: str = "") -> VerifiedSignature:
    if not candidates:
        raise KeyNotFound("no key is registered for this signer" + (f" with kid {header['kid']!r}"
                                                                     if "kid" in header else ""))
    fitting = [key for key in candidates if key.alg in (None, alg) and _key_fits(alg, key.key)]
    if not fitting:
        raise KeyAlgorithmMismatch(f"the signer's key does not fit alg {alg}")
    now = time.time()
    current = [candidate for candidate in fitting if candidate.not_after is None or candidate.not_after > now]
    if not current:
        raise KeyExpired("the signer's key (certificate) has expired")
    for candidate in current:
        try:
            _raw_verify(alg, candidate.key, signature, signing_input)
        except InvalidSignature:
            continue
        return VerifiedSignature(header=header, key=candidate, payload=payload, encoded_header=encoded_header,
                                 signature=normalised_signature(alg, signature))
    raise SignatureInvalid("the signature does not match the payload and the signer's key")


def verify_detached(signature: str, payload: bytes, resolver: Resolver, *,
                    algorithms: Iterable[str], understood: Collection[str] = (),
                    allow_b64_without_crit: bool = False) -> VerifiedSignature:
    """Verify a detached JWS over ``payload`` (the exact bytes received).

    ``understood``: critical header members the caller checks itself (after this
    returns); any other ``crit`` entry is refused. ``allow_b64_without_crit`` is the
    OCEN reference compatibility switch: ``b64: false`` without ``crit`` is accepted
    and ``"kid": null`` counts as no kid.
    """
    if not isinstance(signature, str) or not signature:
        raise MalformedSignature("the signature is missing")
    parts = signature.strip().split(".")
    if len(parts) != 3:
        raise MalformedSignature("a detached JWS has the form header..signature")
    encoded_header, encoded_payload, encoded_signature = parts
    if encoded_payload:
        raise NotDetached("the JWS carries its payload; a detached signature is expected")
    if len(encoded_signature) > MAX_SIGNATURE_BYTES * 2:
        raise MalformedSignature("the signature value is too long")
    header = _parse_header(encoded_header)
    alg = _check_algorithm(header, algorithms)
    b64 = _check_critical(header, allow_b64_without_crit, understood)
    if allow_b64_without_crit and "kid" in header and header["kid"] is None:
        header = {name: value for name, value in header.items() if name != "kid"}
    raw_signature = b64url_decode(encoded_signature)
    if not raw_signature or len(raw_signature) > MAX_SIGNATURE_BYTES:
        raise MalformedSignature("the signature value is empty or too long")
    if "kid" in header and not isinstance(header["kid"], str):
        raise MalformedSignature("kid must be a string")
    candidates = resolver(header)
    return _verify_with(alg, header, candidates, raw_signature, _signing_input(encoded_header, payload, b64),
                        payload, encoded_header)


def _compact_parts(token: str) -> list[str]:
    if not isinstance(token, str) or not token or len(token) > MAX_COMPACT_BYTES:
        raise MalformedSignature("the JWS is missing or too long")
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        raise MalformedSignature("a compact JWS has the form header.payload.signature")
    return parts


def verify_compact(token: str, resolver: Resolver, *, algorithms: Iterable[str]) -> VerifiedSignature:
    """Verify an ordinary compact JWS (payload attached and base64url-encoded)."""
    parts = _compact_parts(token)
    header = _parse_header(parts[0])
    alg = _check_algorithm(header, algorithms)
    if header.get("crit") is not None or header.get("b64", True) is not True:
        raise UnsupportedCritical("no critical extensions are understood here")
    if "kid" in header and not isinstance(header["kid"], str):
        raise MalformedSignature("kid must be a string")
    payload = b64url_decode(parts[1])
    raw_signature = b64url_decode(parts[2])
    return _verify_with(alg, header, resolver(header), raw_signature,
                        f"{parts[0]}.{parts[1]}".encode("ascii"), payload, parts[0])


def verify_jwt(token: str, resolver: Resolver, *, algorithms: Iterable[str],
               typ: Collection[str] | None) -> VerifiedJWT:
    """Verify a JWT's signature and header ``typ`` (``None``: any or none) and parse its claims.

    The registered claims (exp, iss, aud, ...) are checked by ``validate_claims``.
    """
    verified = verify_compact(token, resolver, algorithms=algorithms)
    if typ is not None and verified.header.get("typ") not in typ:
        raise TokenTypeInvalid(f"token type must be {' or '.join(sorted(typ))}")
    claims = parse_json_object(verified.payload, "token's claims")
    return VerifiedJWT(header=verified.header, claims=claims, key=verified.key)


def peek_header(jws: str) -> dict[str, Any]:
    """The protected header of a compact or detached JWS *before* verification, to find
    which keys to fetch; verification parses and checks it again."""
    if not isinstance(jws, str) or len(jws) > MAX_COMPACT_BYTES:
        raise MalformedSignature("the JWS is missing or too long")
    return _parse_header(jws.strip().split(".", 1)[0])


def peek_claims(token: str) -> dict[str, Any]:
    """The claims of a compact JWS *before* verification, to find who claims to have signed it."""
    return parse_json_object(b64url_decode(_compact_parts(token)[1]), "token's claims")


def _number(claims: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    too_large = isinstance(value, int) and abs(value) > MAX_NUMERIC_DATE
    if isinstance(value, bool) or not isinstance(value, int | float) or too_large or not math.isfinite(value):
        raise TokenClaimInvalid(f"claim {name} must be a number (NumericDate)")
    return float(value)


def claim_audiences(claims: dict[str, Any]) -> list[str]:
    """``aud`` as a list; anything but a string or a list of strings is refused."""
    audience = claims.get("aud")
    if audience is None:
        return []
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or not all(isinstance(item, str) for item in audiences):
        raise TokenClaimInvalid("claim aud must be a string or a list of strings")
    return audiences


def validate_claims(claims: dict[str, Any], *, issuer: str | None, audience: str | Collection[str] | None,
                    leeway: float, now: float | None = None) -> None:
    """Check iss, aud, exp (required), nbf and iat (if present) with ``leeway`` seconds of skew.

    ``audience``: one audience, or several of which the token must name at least one.
    """
    now = time.time() if now is None else now
    if issuer is not None and claims.get("iss") != issuer:
        raise TokenWrongIssuer("token issuer is not the one expected")
    audiences = claim_audiences(claims)
    if audience is not None:
        wanted = {audience} if isinstance(audience, str) else set(audience)
        if not wanted & set(audiences):
            raise TokenWrongAudience("token is not meant for this audience")
    exp = _number(claims, "exp", required=True)
    if now > exp + leeway:
        raise TokenExpired("token has expired")
    for name in ("nbf", "iat"):
        value = _number(claims, name, required=False)
        if value is not None and now < value - leeway:
            raise TokenNotYetValid(f"token is not valid yet ({name} is in the future)")


def static_resolver(keys: Sequence[VerificationKey]) -> Resolver:
    """A resolver over a fixed key list: by kid when the header names one, else all."""

    def resolve(header: dict[str, Any]) -> Sequence[VerificationKey]:
        kid = header.get("kid")
        if kid is None:
            return list(keys)
        return [key for key in keys if key.kid == kid]

    return resolve
