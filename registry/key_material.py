"""Parse and vet a participant's public key: a PEM X.509 certificate, a PEM public key
(SubjectPublicKeyInfo) or a JWK. Anything doubtful is refused with a clear message."""

import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.core.exceptions import ValidationError
from jwcrypto import jwk
from jwcrypto.common import JWException
from nacl.bindings import crypto_core_ed25519_is_valid_point

from ocen_sdk.key_loading import DEFAULT_ALG
from registry.models import KeyFormat

MIN_RSA_BITS = 2048
MAX_KEY_TEXT = 20_000
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
ALG_BY_KTY = {"RSA": {"RS256", "PS256"}, "EC": {"ES256"}, "OKP": {"EdDSA"}}


@dataclass(frozen=True)
class ParsedKey:
    public_jwk: dict          # public members + kid, alg, use (+ x5c for certificates)
    kid: str
    thumbprint: str
    alg: str
    kty: str
    source_format: str
    certificate_pem: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None


def check_key_strength(key) -> None:
    """Refuse a key that is weak, or that anyone could sign with without its private half.

    Every path that adds a key parses it with ``parse_public_key``, which calls this; the
    token endpoint calls it again on stored keys (``registry.oauth_hooks``), so a key that
    was registered before a check existed never authenticates either.
    """
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValidationError(f"RSA keys must be at least {MIN_RSA_BITS} bits; this one has {key.key_size}.")
        _check_rsa_numbers(key.public_numbers())
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValidationError(f"EC keys must use the P-256 curve; this one uses {key.curve.name}.")
        return  # cryptography refuses a point that is not on the curve when it loads one
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        # libsodium: on the curve, canonically encoded (y < p, no sign bit on x = 0), of
        # large prime order (so none of the eight small-order points, nor one with a
        # small-order component). A small-order key verifies signatures nobody made.
        if not crypto_core_ed25519_is_valid_point(raw):
            raise ValidationError("This Ed25519 key is not a valid public key (a point of small order, not "
                                  "canonically encoded, or outside the prime-order group): anyone could sign "
                                  "for it. Generate a new key.")
        return
    raise ValidationError("Only RSA (2048 bits or more), EC P-256 and Ed25519 keys are accepted.")


MIN_RSA_EXPONENT = 65537
# Trial division bound: every modulus with a prime factor below it is refused.
SMALL_PRIME_BOUND = 10_000
# A modulus whose two primes are this close (Fermat's method, this many steps) is refused.
FERMAT_STEPS = 100


@lru_cache(maxsize=1)
def _small_primes_product() -> int:
    sieve = bytearray([1]) * SMALL_PRIME_BOUND
    sieve[0:2] = b"\x00\x00"
    for number in range(2, math.isqrt(SMALL_PRIME_BOUND) + 1):
        if sieve[number]:
            sieve[number * number::number] = bytearray(len(range(number * number, SMALL_PRIME_BOUND, number)))
    return math.prod(number for number in range(SMALL_PRIME_BOUND) if sieve[number])


def _check_rsa_numbers(numbers: rsa.RSAPublicNumbers) -> None:
    e, n = numbers.e, numbers.n
    if e < MIN_RSA_EXPONENT or e % 2 == 0:
        raise ValidationError(f"The RSA public exponent must be odd and at least {MIN_RSA_EXPONENT}; this one is "
                              f"{e}.")
    factored = ValidationError("This RSA modulus is trivially factored (a small prime factor, or two primes too "
                               "close together): anyone could compute its private key. Generate a new key.")
    if math.gcd(n, _small_primes_product()) != 1:
        raise factored
    # Fermat: n = a^2 - b^2 for a just above sqrt(n) when p and q are close (or equal).
    a = math.isqrt(n)
    if a * a == n:
        raise factored
    for step in range(1, FERMAT_STEPS + 1):
        b_squared = (a + step) ** 2 - n
        if math.isqrt(b_squared) ** 2 == b_squared:
            raise factored


def _refuse_private(text: str) -> None:
    if "PRIVATE KEY" in text:
        raise ValidationError("This is private key material. Register only the public key or certificate; "
                              "never send a private key to the registry.")


def parse_public_key(material: str, *, kid: str | None = None, alg: str | None = None,
                     now: datetime | None = None) -> ParsedKey:
    """Parse ``material`` (PEM certificate, PEM public key or JWK JSON) and vet it."""
    if not isinstance(material, str) or not material.strip():
        raise ValidationError("A public key or certificate is required.")
    if len(material) > MAX_KEY_TEXT:
        raise ValidationError("The key text is too long.")
    text = material.strip()
    _refuse_private(text)
    now = now or datetime.now(UTC)
    certificate_pem, not_before, not_after, x5c = "", None, None, None
    declared_alg = alg

    if text.startswith("{"):
        source_format = KeyFormat.JWK
        public_key, jwk_kid, jwk_alg = _from_jwk(text)
        kid = kid or jwk_kid
        declared_alg = declared_alg or jwk_alg
    elif "BEGIN CERTIFICATE" in text:
        source_format = KeyFormat.CERTIFICATE
        try:
            certificate = x509.load_pem_x509_certificate(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValidationError("The certificate is not a valid PEM X.509 certificate.") from exc
        not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        if now > not_after:
            raise ValidationError(f"The certificate expired on {not_after:%Y-%m-%d %H:%M} UTC.")
        if now < not_before:
            raise ValidationError(f"The certificate is not valid before {not_before:%Y-%m-%d %H:%M} UTC.")
        try:
            public_key = certificate.public_key()
        except ValueError as exc:
            raise ValidationError("The certificate's public key cannot be read.") from exc
        der = certificate.public_bytes(serialization.Encoding.DER)
        x5c = [base64.b64encode(der).decode("ascii")]
        certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    elif "BEGIN PUBLIC KEY" in text or "BEGIN RSA PUBLIC KEY" in text:
        source_format = KeyFormat.PUBLIC_KEY
        try:
            public_key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError, TypeError) as exc:
            raise ValidationError("The public key is not a valid PEM public key.") from exc
    else:
        raise ValidationError("Expected a PEM certificate, a PEM public key, or a JWK (JSON object).")

    check_key_strength(public_key)
    key = jwk.JWK.from_pyca(public_key)
    kty = key["kty"]
    final_alg = declared_alg or DEFAULT_ALG[kty]
    if final_alg not in ALG_BY_KTY[kty]:
        raise ValidationError(f"Algorithm {final_alg} does not fit a {kty} key "
                              f"(use {', '.join(sorted(ALG_BY_KTY[kty]))}).")
    thumbprint = key.thumbprint()
    kid = (kid or thumbprint).strip()
    if not kid or len(kid) > 128:
        raise ValidationError("The kid must be 1 to 128 characters.")
    public_jwk = {**key.export_public(as_dict=True), "kid": kid, "alg": final_alg, "use": "sig"}
    if x5c:
        public_jwk["x5c"] = x5c
    return ParsedKey(public_jwk=public_jwk, kid=kid, thumbprint=thumbprint, alg=final_alg, kty=kty,
                     source_format=source_format, certificate_pem=certificate_pem,
                     not_before=not_before, not_after=not_after)


def _from_jwk(text: str):
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationError("The JWK is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise ValidationError("The JWK must be a JSON object.")
    if "keys" in data:
        raise ValidationError("Register one key at a time, not a JWK Set.")
    if PRIVATE_JWK_MEMBERS & set(data):
        if data.get("kty") == "oct":
            raise ValidationError("Symmetric (oct) keys are not accepted.")
        raise ValidationError("This JWK contains private key material. Register only the public key.")
    if data.get("kty") not in ALG_BY_KTY:
        raise ValidationError("The JWK kty must be RSA, EC or OKP.")
    if data.get("use") not in (None, "sig"):
        raise ValidationError("The JWK use must be 'sig'.")
    try:
        key = jwk.JWK(**data)
        public_key = key.get_op_key("verify")
    except (JWException, ValueError, TypeError, KeyError) as exc:
        raise ValidationError(f"The JWK is malformed: {exc}") from exc
    kid = data.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValidationError("The JWK kid must be a string.")
    alg = data.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise ValidationError("The JWK alg must be a string.")
    return public_key, kid, alg
