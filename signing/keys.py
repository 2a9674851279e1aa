"""The service's own signing keys: generation, rotation, loading.

Lifecycle: a key is created NEXT (published in the JWKS, not signing), becomes ACTIVE
(the one signer) when rotation activates it, and RETIRED when replaced. A retired key
never signs again, so its private half is erased in the transaction that retires it;
its public half stays published until every token it signed has expired. Processes
cache the loaded signer for a few seconds: a pre-published key is already in every
verifier's JWKS, so that delay is harmless. Private halves are encrypted at rest under
the key-encryption keys (``signing.kek``).

Every change here is reported, inside its transaction, to the
``AUTHSERVICE["SIGNING_KEY_EVENT_RECORDER"]`` hook (the project's settings name the
registry's audit log), so no caller can change a key without leaving a trace.
"""

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from jwcrypto import jwk

from ocen_sdk.jws import Signer, VerificationKey
from signing import jwks
from signing.conf import signing_settings
from signing.kek import decrypts, encryption_materials, key_encryption, key_encryption_for_writing
from signing.models import SigningKey, SigningKeyState

logger = logging.getLogger(__name__)


class SigningKeyUnavailable(RuntimeError):
    """The service cannot sign: no active key, or its private half cannot be decrypted."""


@dataclass(frozen=True)
class UndecryptableKey:
    kid: str
    state: str
    fix: str


def undecryptable_keys() -> list[UndecryptableKey]:
    """Stored private keys the configured key-encryption keys cannot decrypt, each with
    what most likely happened and how to recover."""
    materials = encryption_materials()
    found = []
    for key in SigningKey.objects.exclude(private_key_encrypted="").order_by("created_at"):
        token = key.private_key_encrypted
        if decrypts(materials, token):
            continue
        found.append(UndecryptableKey(key.kid, key.state, _recovery_hint(token)))
    return found


RESTORE = ("put the key it was encrypted with after the current one "
           "(AUTHSERVICE_KEY_ENCRYPTION_KEY=current,old), run `manage.py reencrypt_keys`, then drop the old one")


def _recovery_hint(token: str) -> str:
    if signing_settings.KEY_ENCRYPTION_KEYS and decrypts((settings.SECRET_KEY,), token):
        return ("It was encrypted before AUTHSERVICE_KEY_ENCRYPTION_KEY was set, with the key derived from "
                "DJANGO_SECRET_KEY: set AUTHSERVICE_KEY_ENCRYPTION_KEY=<new key>,<the value of DJANGO_SECRET_KEY>, "
                "run `manage.py reencrypt_keys`, then drop the second item.")
    if not signing_settings.KEY_ENCRYPTION_KEYS:
        return ("AUTHSERVICE_KEY_ENCRYPTION_KEY is unset, so keys are read with a key derived from "
                "DJANGO_SECRET_KEY, which changed since this key was stored (or the key-encryption key it was "
                "stored under is no longer set): set AUTHSERVICE_KEY_ENCRYPTION_KEY=<new key>,<the previous "
                "DJANGO_SECRET_KEY or key-encryption key>, run `manage.py reencrypt_keys`, then drop the second "
                "item.")
    return f"None of the configured key-encryption keys decrypts it: {RESTORE}."


# --- Generation and rotation (the only writers of SigningKey) ------------------------------

class SigningKeyEvent(StrEnum):
    """What the event recorder hook is told; the registry's audit actions share the names."""

    CREATED = "SIGNING_KEY_CREATED"
    PREPUBLISHED = "SIGNING_KEY_PREPUBLISHED"
    ACTIVATED = "SIGNING_KEY_ACTIVATED"
    RETIRED = "SIGNING_KEY_RETIRED"
    REENCRYPTED = "SIGNING_KEYS_REENCRYPTED"


def ignore_key_event(*, action: str, before: dict, after: dict) -> None:
    """The default SIGNING_KEY_EVENT_RECORDER: the log lines below are the only trace."""


def _record(action: SigningKeyEvent, *, before: dict | None = None, after: dict | None = None) -> None:
    signing_settings.SIGNING_KEY_EVENT_RECORDER(action=str(action), before=before or {}, after=after or {})


def _described(key: SigningKey) -> dict:
    return {"kid": key.kid, "alg": key.alg, "state": str(key.state)}


def _generate_private_key(alg: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValidationError(f"Unsupported signing algorithm {alg}.")


def _new_key(*, alg: str, state: str, now: datetime) -> SigningKey:
    """Insert a new key in its own savepoint: a concurrent writer taking the same state
    first (one ACTIVE, one NEXT) surfaces as IntegrityError with the outer transaction intact."""
    private_key = _generate_private_key(alg)
    public = jwk.JWK.from_pyca(private_key.public_key())
    kid = public.thumbprint()
    public_jwk = {**public.export_public(as_dict=True), "kid": kid, "use": "sig", "alg": alg}
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with transaction.atomic():
        return SigningKey.objects.create(
            kid=kid,
            alg=alg,
            state=state,
            public_jwk=public_jwk,
            private_key_encrypted=key_encryption_for_writing().encrypt(pem).decode("ascii"),
            created_at=now,
            activated_at=now if state == SigningKeyState.ACTIVE else None,
        )


@transaction.atomic
def signing_key_ensure() -> tuple[SigningKey, bool]:
    """Make sure a signing key exists (first start). Returns (active key, created).

    Two first starts at once both find no key; the one that loses the insert returns
    the winner's key."""
    active = SigningKey.objects.select_for_update().filter(state=SigningKeyState.ACTIVE).first()
    if active is not None:
        return active, False
    try:
        key = _new_key(alg=signing_settings.SIGNING_ALG, state=SigningKeyState.ACTIVE, now=timezone.now())
    except IntegrityError:
        return SigningKey.objects.get(state=SigningKeyState.ACTIVE), False
    _record(SigningKeyEvent.CREATED, after=_described(key))
    logger.info("created signing key kid=%s alg=%s", key.kid, key.alg)
    return key, True


@transaction.atomic
def signing_key_prepublish(*, alg: str | None = None) -> tuple[SigningKey, bool]:
    """Publish the next key without letting it sign yet. Idempotent: returns (key, created).

    Of two pre-publications at the same moment one wins; the other is refused with a
    ValidationError rather than silently returning a key its caller did not create."""
    existing = SigningKey.objects.select_for_update().filter(state=SigningKeyState.NEXT).first()
    if existing is not None:
        return existing, False
    try:
        key = _new_key(alg=alg or signing_settings.SIGNING_ALG, state=SigningKeyState.NEXT,
                       now=timezone.now())
    except IntegrityError as exc:
        raise ValidationError("Another rotation pre-published a key at the same moment: see "
                              "`rotate_signing_key --status`.") from exc
    _record(SigningKeyEvent.PREPUBLISHED, after=_described(key))
    logger.info("pre-published signing key kid=%s alg=%s", key.kid, key.alg)
    return key, True


@transaction.atomic
def signing_key_activate(*, force: bool = False) -> SigningKey:
    """Make the pre-published key the signer and retire the current one.

    Refused until the next key has been published for the JWKS max-age, so that no
    verifier meets a token signed by a key its cached JWKS does not hold yet. The
    retired key's private half is erased here: it never signs again, and its public
    half (all verifiers need) stays published until its tokens have expired.
    """
    now = timezone.now()
    next_key = SigningKey.objects.select_for_update().filter(state=SigningKeyState.NEXT).first()
    if next_key is None:
        raise ValidationError("There is no pre-published key: run rotate_signing_key first.")
    published_for = (now - next_key.created_at).total_seconds()
    if not force and published_for < signing_settings.JWKS_MAX_AGE:
        raise ValidationError(
            f"Key {next_key.kid} has been published for {int(published_for)}s; verifiers may cache the "
            f"JWKS for {signing_settings.JWKS_MAX_AGE}s. Wait, or pass --force."
        )
    if not decrypts(encryption_materials(), next_key.private_key_encrypted):
        raise ValidationError(f"Key {next_key.kid} cannot be decrypted with the configured key-encryption keys, "
                              "so it could not sign: see `manage.py check`.")
    retiring = SigningKey.objects.select_for_update().filter(state=SigningKeyState.ACTIVE).first()
    if retiring is not None:
        retiring.state = SigningKeyState.RETIRED
        retiring.retired_at = now
        retiring.private_key_encrypted = ""
        retiring.save(update_fields=["state", "retired_at", "private_key_encrypted"])
    next_key.state = SigningKeyState.ACTIVE
    next_key.activated_at = now
    next_key.save(update_fields=["state", "activated_at"])
    if retiring is not None:
        _record(SigningKeyEvent.RETIRED, before={**_described(retiring), "state": str(SigningKeyState.ACTIVE)},
                after={**_described(retiring), "private_key_erased": True,
                       "published_until": retiring.published_until.isoformat()})
    _record(SigningKeyEvent.ACTIVATED, before={**_described(next_key), "state": str(SigningKeyState.NEXT)},
            after={**_described(next_key), "forced": force})
    logger.info("activated signing key kid=%s", next_key.kid)
    return next_key


@dataclass(frozen=True)
class Reencryption:
    reencrypted: list[str]
    already_current: list[str]
    without_private_key: int


@transaction.atomic
def signing_keys_reencrypt() -> Reencryption:
    """Re-encrypt every stored private key under the first key-encryption key, so the
    others can be dropped. Idempotent; all or nothing: refused, changing nothing, if
    any key cannot be decrypted with the configured keys."""
    materials = encryption_materials()
    keys = list(SigningKey.objects.select_for_update().order_by("created_at"))
    stored = [key for key in keys if key.private_key_encrypted]
    lost = [key.kid for key in stored if not decrypts(materials, key.private_key_encrypted)]
    if lost:
        raise ValidationError(
            f"Signing key(s) {', '.join(lost)} cannot be decrypted with the configured key-encryption keys; "
            f"nothing was changed. To recover, {RESTORE}."
        )
    reencrypted, current = [], []
    for key in stored:
        if decrypts(materials[:1], key.private_key_encrypted):
            current.append(key.kid)
            continue
        token = key_encryption_for_writing().rotate(key.private_key_encrypted.encode("ascii"))
        key.private_key_encrypted = token.decode("ascii")
        key.save(update_fields=["private_key_encrypted"])
        reencrypted.append(key.kid)
    if reencrypted:
        _record(SigningKeyEvent.REENCRYPTED, after={"kids": reencrypted})
        logger.info("re-encrypted signing keys %s under the first key-encryption key", ", ".join(reencrypted))
    return Reencryption(reencrypted, current, len(keys) - len(stored))


# --- Loading (hot path) -------------------------------------------------------------------

def _load_private(key: SigningKey) -> Signer:
    try:
        pem = key_encryption().decrypt(key.private_key_encrypted.encode("ascii"))
    except InvalidToken as exc:
        raise SigningKeyUnavailable(
            f"Signing key {key.kid} cannot be decrypted: AUTHSERVICE_KEY_ENCRYPTION_KEY does not match "
            "(`manage.py check` says how to recover)."
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
        if now - self._signer.loaded_at < signing_settings.SIGNER_CACHE_SECONDS:
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
        fresh = now - self._public.loaded_at < signing_settings.SIGNER_CACHE_SECONDS
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
        jwks.forget()
        with self._lock:
            self._signer = _Cached()
            self._public = _Cached()
            self._public_refreshed_on_miss_at = float("-inf")


key_cache = _KeyCache()


def active_signer() -> Signer | None:
    """The key that signs now (tokens, registry answers), or None before the first key."""
    return key_cache.signer()
