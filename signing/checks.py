"""System checks of the key-encryption keys and of the stored signing keys they protect.

Their ids stay those they had in ``authservice``, so ``SILENCED_SYSTEM_CHECKS`` and
runbooks that name them keep working."""

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from signing.conf import signing_settings
from signing.kek import RANDOM_KEY_RULE, is_random_key
from signing.keys import undecryptable_keys


def _key_encryption_keys() -> list[str] | None:
    """The configured key-encryption keys, read afresh as ``authservice.E001`` reads its settings."""
    signing_settings.reload()
    try:
        return signing_settings.KEY_ENCRYPTION_KEYS
    except ImproperlyConfigured:
        return None  # authservice.E001 reports it


@register()
def key_encryption_key_check(app_configs, **kwargs):
    if settings.DEBUG or _key_encryption_keys() is None or _key_encryption_keys():
        return []
    return [
        Warning(
            "AUTHSERVICE_KEY_ENCRYPTION_KEY is not set: the service's private keys are encrypted "
            "with a key derived from DJANGO_SECRET_KEY.",
            hint="Set AUTHSERVICE_KEY_ENCRYPTION_KEY to a dedicated key: 32 random bytes, e.g. a Fernet key.",
            id="authservice.W001",
        )
    ]


@register()
def legacy_key_encryption_key_check(app_configs, **kwargs):
    """A passphrase after the first key-encryption key only decrypts (the first one, random,
    is enforced at start-up): it is there to migrate, and should leave once it has."""
    keys = _key_encryption_keys() or []
    return [
        Warning(
            f"AUTHSERVICE_KEY_ENCRYPTION_KEY item {position} is not a random key (a passphrase): it only decrypts, "
            "and whatever it encrypted falls to a wordlist from a copy of the database or a backup.",
            hint="Run `manage.py reencrypt_keys`, replace the signing key it protected (`rotate_signing_key`, then "
                 "`--activate` after the token lifetime), then drop the item (keep it in AUTHSERVICE_AUDIT_KEY "
                 f"while audit links it keyed must verify). New keys are {RANDOM_KEY_RULE}.",
            id="authservice.W004",
        )
        for position, key in enumerate(keys[1:], start=2) if not is_random_key(key)
    ]


@register()
def signing_keys_decrypt_check(app_configs, **kwargs):
    """Every stored private key decrypts with the configured key-encryption keys.

    Not tagged ``database``, so a plain ``manage.py check`` (and ``migrate``) fails
    before a service that could not sign a single token is started. A database that
    is down or not migrated yet is not this check's business (``/readyz`` reports it).
    """
    if _key_encryption_keys() is None:
        return []
    try:
        broken = undecryptable_keys()
    except DatabaseError:
        return []
    return [
        Error(
            f"Signing key {key.kid} ({key.state}) cannot be decrypted with the configured key-encryption keys: "
            "the service cannot sign with it (the token endpoint answers 503).",
            hint=key.fix + (" If that key is lost for good, replace the signing key: `manage.py "
                            "rotate_signing_key`, then `manage.py rotate_signing_key --activate --force`."
                            if key.state == "ACTIVE" else ""),
            id="authservice.E002",
        )
        for key in broken
    ]
