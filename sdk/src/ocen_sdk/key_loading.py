"""Turning key material (PEM, JWK) into the objects ``ocen_sdk.jws`` works with."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jwcrypto import jwk
from jwcrypto.common import JWException

from ocen_sdk.jws import JWSError, PrivateKey, VerificationKey

DEFAULT_ALG = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}
PUBLIC_KTYS = frozenset(DEFAULT_ALG)


def verification_key_from_jwk(data: dict[str, Any] | str, *, owner: Any = None) -> VerificationKey:
    """A public JWK (dict or JSON) as a VerificationKey, bound to its ``alg`` if it has one.

    With ``x5c``, the certificate's notAfter becomes the key's ``not_after``.
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise JWSError("the JWK is not JSON") from exc
    if not isinstance(data, dict) or {"d", "k"} & set(data):
        raise JWSError("expected a public JWK")
    if not isinstance(data.get("kty"), str) or data["kty"] not in PUBLIC_KTYS or not all(
            isinstance(data.get(name), str | None) for name in ("kid", "alg", "crv", "x", "y", "n", "e")):
        raise JWSError("the JWK is not an RSA, EC or OKP public key with string members")
    try:
        public = jwk.JWK(**{k: v for k, v in data.items() if k != "x5c"}).get_op_key("verify")
    except (JWException, ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise JWSError(f"the JWK cannot be read: {exc}") from exc
    return VerificationKey(key=public, kid=data.get("kid"), alg=data.get("alg"), owner=owner,
                           not_after=_certificate_not_after(data.get("x5c")))


def _certificate_not_after(x5c: Any) -> float | None:
    if not isinstance(x5c, list) or not x5c or not isinstance(x5c[0], str):
        return None
    try:
        certificate = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
    except ValueError as exc:
        raise JWSError("the JWK's x5c certificate cannot be read") from exc
    return certificate.not_valid_after_utc.timestamp()


def load_private_key(material: str | bytes, password: bytes | None = None) -> PrivateKey:
    """A private key from PEM (PKCS#8 / traditional) or a private JWK."""
    text = material.decode() if isinstance(material, bytes) else material
    if text.lstrip().startswith("{"):
        return jwk.JWK.from_json(text).get_op_key("sign")
    return serialization.load_pem_private_key(text.encode(), password=password)


def default_alg(key: PrivateKey) -> str:
    return DEFAULT_ALG[jwk.JWK.from_pyca(key.public_key())["kty"]]


def thumbprint(key: PrivateKey) -> str:
    """RFC 7638 thumbprint of the key's public half: the registry's default kid."""
    return jwk.JWK.from_pyca(key.public_key()).thumbprint()


def public_pem(key: PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
