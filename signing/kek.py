"""Key-encryption keys, and the one derivation of every key the service makes from a
configured secret (``derive``).

The key-encryption keys (``AUTHSERVICE["KEY_ENCRYPTION_KEYS"]``) protect the service's
private keys at rest: the first encrypts, every one decrypts, so they rotate. Unset,
they are derived from ``SECRET_KEY``, which the system checks warn about.
"""

import base64
import binascii
import re
from enum import StrEnum
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from signing.conf import signing_settings

# --- One derivation ---------------------------------------------------------------------------


class KeyPurpose(StrEnum):
    """What a derived key is for. Each value is the HKDF ``info`` of its keys and is fixed
    for good: changing one changes every key derived for that purpose, so what they
    protect (stored private keys, audit links, hand-offs in flight) stops opening."""

    KEY_ENCRYPTION = "ocen-authservice key-encryption-key"
    AUDIT_LOG = "ocen-authservice audit-log key"
    AUDIT_LOG_KEY_ID = "ocen-authservice audit-log key id"
    CREDENTIAL_HANDOFF = "ocen-authservice admin credential hand-off"


def derive(purpose: KeyPurpose, material: str) -> bytes:
    """A 32-byte key for ``purpose`` from the configured secret ``material`` (HKDF-SHA256,
    no salt, the purpose as info): the same string gives unrelated keys for different
    purposes, and the same key for one purpose wherever it is configured."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=KeyPurpose(purpose).value.encode("ascii")).derive(material.encode("utf-8"))


def fernet_key(purpose: KeyPurpose, material: str) -> bytes:
    """``derive``, encoded as a Fernet key."""
    return base64.urlsafe_b64encode(derive(purpose, material))


# --- Random keys, not passphrases -------------------------------------------------------------

# A key-encryption key (and an audit key) is 32 to 64 random bytes, base64 (standard or
# URL-safe, padded or not: a Fernet key, ``secrets.token_urlsafe(32)``) or hex. A
# passphrase is refused: anything derived from it, or MACed under it, and kept in the
# database would let a copy of the database test a wordlist against it offline. The
# check is of shape, not a proof of randomness: a generated key always passes (random
# 32 bytes show about 30 distinct values, their base64 about 31 distinct characters),
# a typed phrase or a repeated pattern does not.
MIN_KEY_BYTES, MAX_KEY_BYTES = 32, 64
MIN_DISTINCT_BYTES = 16
MIN_DISTINCT_BASE64_CHARACTERS = 20
RANDOM_KEY_RULE = ("32 random bytes, base64 or hex encoded, e.g. a Fernet key: "
                   "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'")
_HEX_KEY = re.compile(r"\A(?:[0-9a-fA-F]{2})+\Z")
_BASE64_KEY = re.compile(r"\A[A-Za-z0-9_\-+/]+={0,2}\Z")


def is_random_key(material: str) -> bool:
    """Whether ``material`` has the shape of a generated key (see above), not a passphrase's."""
    text = material.strip()
    if _HEX_KEY.match(text):
        raw = bytes.fromhex(text)
    elif _BASE64_KEY.match(text):
        body = text.rstrip("=").replace("+", "-").replace("/", "_")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, binascii.Error):
            return False
        if len(set(body)) < MIN_DISTINCT_BASE64_CHARACTERS:
            return False
    else:
        return False
    return MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES and len(set(raw)) >= MIN_DISTINCT_BYTES


def weak_first_keys() -> list[str]:
    """Settings whose first key (the one new data is protected with) is not random, each as
    a sentence naming the setting (never its value) and the fix."""
    problems = []
    if signing_settings.KEY_ENCRYPTION_KEYS and not is_random_key(signing_settings.KEY_ENCRYPTION_KEYS[0]):
        problems.append(
            f"AUTHSERVICE_KEY_ENCRYPTION_KEY must be {RANDOM_KEY_RULE}. A passphrase falls to a wordlist from a copy "
            "of the database. An existing deployment moves with AUTHSERVICE_KEY_ENCRYPTION_KEY=<new key>,<the old "
            "one>, `manage.py reencrypt_keys`, then a signing key rotation (see the README, Key-encryption keys).")
    if signing_settings.AUDIT_KEYS and not is_random_key(signing_settings.AUDIT_KEYS[0]):
        problems.append(
            f"AUTHSERVICE_AUDIT_KEY's first key (it keys new audit links) must be {RANDOM_KEY_RULE}. Keep an old "
            "passphrase after it while the links it keyed must verify.")
    return problems


def refuse_weak_keys() -> None:
    """At start-up: a process with a passphrase as its first key-encryption or audit key
    does not start (``ImproperlyConfigured`` naming the setting)."""
    try:
        problems = weak_first_keys()
    except ImproperlyConfigured:
        return  # authservice.E001 names what is wrong with the settings
    if problems:
        raise ImproperlyConfigured(" ".join(problems))


# --- Encryption at rest ------------------------------------------------------------------------

def _fernet_key(material: str) -> bytes:
    """Use a Fernet key as given; derive one from any other string."""
    try:
        if len(base64.urlsafe_b64decode(material.encode())) == 32:
            return material.encode()
    except ValueError:
        pass
    return fernet_key(KeyPurpose.KEY_ENCRYPTION, material)


@lru_cache(maxsize=8)
def _multi_fernet(materials: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(m)) for m in materials])


def encryption_materials() -> tuple[str, ...]:
    """The configured key-encryption keys, or ``SECRET_KEY`` when there are none."""
    return tuple(signing_settings.KEY_ENCRYPTION_KEYS) or (settings.SECRET_KEY,)


def key_encryption() -> MultiFernet:
    """The configured key-encryption keys: the first encrypts, every one decrypts."""
    return _multi_fernet(encryption_materials())


def key_encryption_for_writing() -> MultiFernet:
    """``key_encryption()``, refusing to encrypt anything under a passphrase."""
    refuse_weak_keys()
    return key_encryption()


def decrypts(materials: tuple[str, ...], token: str) -> bool:
    """Whether the key-encryption keys ``materials`` decrypt ``token``."""
    try:
        _multi_fernet(materials).decrypt(token.encode("ascii"))
    except InvalidToken:
        return False
    return True
