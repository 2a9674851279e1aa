"""The service's own signing keys: generation, encryption at rest, rotation, loading.

Lifecycle: a key is created NEXT (published in the JWKS, not signing), becomes ACTIVE
(the one signer) when rotation activates it, and RETIRED when replaced; a retired key
stays published until every token it signed has expired, then its private half is
erased. Processes cache the loaded signer for a few seconds: a pre-published key is
already in every verifier's JWKS, so that delay is harmless.
"""

import base64
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone
from jwcrypto import jwk

from authservice.conf import authservice_settings
from authservice.models import SigningKey, SigningKeyState
from ocen_sdk.jws import Signer, VerificationKey

logger = logging.getLogger(__name__)


# --- Encryption at rest -----------------------------------------------------------------

def _fernet_key(material: str) -> bytes:
    """Use a Fernet key as given; derive one (HKDF-SHA256) from any other string."""
    try:
        if len(base64.urlsafe_b64decode(material.encode())) == 32:
            return material.encode()
    except ValueError:
        pass
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"ocen-authservice key-encryption-key").derive(material.encode())
    return base64.urlsafe_b64encode(derived)


@lru_cache(maxsize=4)
def _multi_fernet(materials: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(m)) for m in materials])


def key_encryption() -> MultiFernet:
    materials = tuple(authservice_settings.KEY_ENCRYPTION_KEYS) or (settings.SECRET_KEY,)
    return _multi_fernet(materials)


# --- Generation and rotation (the only writers of SigningKey) ------------------------------

def _generate_private_key(alg: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValidationError(f"Unsupported signing algorithm {alg}.")


def _new_key(*, alg: str, state: str, now: datetime) -> SigningKey:
    private_key = _generate_private_key(alg)
    public = jwk.JWK.from_pyca(private_key.public_key())
    kid = public.thumbprint()
    public_jwk = {**public.export_public(as_dict=True), "kid": kid, "use": "sig", "alg": alg}
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey.objects.create(
        kid=kid,
        alg=alg,
        state=state,
        public_jwk=public_jwk,
        private_key_encrypted=key_encryption().encrypt(pem).decode("ascii"),
        created_at=now,
        activated_at=now if state == SigningKeyState.ACTIVE else None,
    )


@transaction.atomic
def signing_key_ensure() -> tuple[SigningKey, bool]:
    """Make sure a signing key exists (first start). Returns (active key, created)."""
    active = SigningKey.objects.select_for_update().filter(state=SigningKeyState.ACTIVE).first()
    if active is not None:
        return active, False
    key = _new_key(alg=authservice_settings.SIGNING_ALG, state=SigningKeyState.ACTIVE, now=timezone.now())
    logger.info("created signing key kid=%s alg=%s", key.kid, key.alg)
    return key, True


@transaction.atomic
def signing_key_prepublish(*, alg: str | None = None) -> tuple[SigningKey, bool]:
    """Publish the next key without letting it sign yet. Idempotent: returns (key, created)."""
    existing = SigningKey.objects.select_for_update().filter(state=SigningKeyState.NEXT).first()
    if existing is not None:
        return existing, False
    key = _new_key(alg=alg or authservice_settings.SIGNING_ALG, state=SigningKeyState.NEXT,
                   now=timezone.now())
    logger.info("pre-published signing key kid=%s alg=%s", key.kid, key.alg)
    return key, True


@transaction.atomic
def signing_key_activate(*, force: bool = False) -> SigningKey:
    """Make the pre-published key the signer and retire the current one.

    Refused until the next key has been published for the JWKS max-age, so that no
    verifier meets a token signed by a key its cached JWKS does not hold yet.
    """
    now = timezone.now()
    next_key = SigningKey.objects.select_for_update().filter(state=SigningKeyState.NEXT).first()
    if next_key is None:
        raise ValidationError("There is no pre-published key: run rotate_signing_key first.")
    published_for = (now - next_key.created_at).total_seconds()
    if not force and published_for < authservice_settings.JWKS_MAX_AGE:
        raise ValidationError(
            f"Key {next_key.kid} has been published for {int(published_for)}s; verifiers may cache the "
            f"JWKS for {authservice_settings.JWKS_MAX_AGE}s. Wait, or pass --force."
        )
    SigningKey.objects.filter(state=SigningKeyState.ACTIVE).update(
        state=SigningKeyState.RETIRED, retired_at=now
    )
    next_key.state = SigningKeyState.ACTIVE
    next_key.activated_at = now
    next_key.save(update_fields=["state", "activated_at"])
    _erase_expired_private_keys(now)
    logger.info("activated signing key kid=%s", next_key.kid)
    return next_key


def _erase_expired_private_keys(now: datetime) -> None:
    published = SigningKey.objects.published(now).values("pk")
    SigningKey.objects.filter(state=SigningKeyState.RETIRED).exclude(pk__in=published).exclude(
        private_key_encrypted=""
    ).update(private_key_encrypted="")


# --- Loading (hot path) -------------------------------------------------------------------

def _load_private(key: SigningKey) -> Signer:
    try:
        pem = key_encryption().decrypt(key.private_key_encrypted.encode("ascii"))
    except InvalidToken as exc:
        raise RuntimeError(
            f"Signing key {key.kid} cannot be decrypted: AUTHSERVICE_KEY_ENCRYPTION_KEY does not match."
        ) from exc
    private_key = serialization.load_pem_private_key(pem, password=None)
    return Signer(key=private_key, alg=key.alg, kid=key.kid)


def _load_public(key: SigningKey) -> VerificationKey:
    public = jwk.JWK(**key.public_jwk).get_op_key("verify")
    return VerificationKey(key=public, kid=key.kid, alg=key.alg, owner="service")


@dataclass
class _Cached:
    value: object = None
    loaded_at: float = float("-inf")


class _KeyCache:
    """Per-process cache of the active signer and the published verification keys."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signer = _Cached()
        self._public = _Cached()
        self._public_refreshed_on_miss_at = float("-inf")

    def signer(self) -> Signer | None:
        now = time.monotonic()
        if now - self._signer.loaded_at < authservice_settings.SIGNER_CACHE_SECONDS:
            return self._signer.value
        with self._lock:
            current = self._signer.value
            row = SigningKey.objects.filter(state=SigningKeyState.ACTIVE).first()
            if row is None:
                value = None
            elif current is not None and current.kid == row.kid:
                value = current
            else:
                value = _load_private(row)
            self._signer = _Cached(value, now)
            return value

    def public_keys(self, *, refresh_for_kid: str | None = None) -> dict[str, VerificationKey]:
        """Published keys by kid. An unknown kid triggers at most one reload a second."""
        now = time.monotonic()
        cached = self._public.value
        fresh = now - self._public.loaded_at < authservice_settings.SIGNER_CACHE_SECONDS
        miss = refresh_for_kid is not None and cached is not None and refresh_for_kid not in cached
        if fresh and not (miss and now - self._public_refreshed_on_miss_at > 1.0):
            return cached
        with self._lock:
            if miss:
                self._public_refreshed_on_miss_at = now
            value = {row.kid: _load_public(row) for row in SigningKey.objects.published()}
            self._public = _Cached(value, now)
            return value

    def resolve(self, header: dict) -> list[VerificationKey]:
        """A ``ocen_sdk.jws`` resolver over the published keys (by kid; refreshed on a miss)."""
        kid = header.get("kid")
        if not isinstance(kid, str):
            return []
        key = self.public_keys().get(kid) or self.public_keys(refresh_for_kid=kid).get(kid)
        return [key] if key else []

    def clear(self) -> None:
        _jwks_document.value, _jwks_document.loaded_at = None, float("-inf")
        with self._lock:
            self._signer = _Cached()
            self._public = _Cached()
            self._public_refreshed_on_miss_at = float("-inf")


key_cache = _KeyCache()


def active_signer() -> Signer | None:
    return key_cache.signer()


_jwks_document = _Cached()


def published_jwks() -> dict:
    """The JWKS document, re-read at most every SIGNER_CACHE_SECONDS. While the database
    is unreachable the last document read is served: verifiers keep working through
    an outage (the keys themselves cannot change while nothing can write them)."""
    now = time.monotonic()
    if now - _jwks_document.loaded_at < authservice_settings.SIGNER_CACHE_SECONDS:
        return _jwks_document.value
    try:
        document = {"keys": [row.public_jwk for row in SigningKey.objects.published().order_by("created_at")]}
    except DatabaseError:
        if _jwks_document.value is None:
            raise
        logger.warning("JWKS: database unreachable, serving the keys read %.0fs ago", now - _jwks_document.loaded_at)
        return _jwks_document.value
    _jwks_document.value, _jwks_document.loaded_at = document, now
    return document
