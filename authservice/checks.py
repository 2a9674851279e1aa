"""System checks for configuration that is legal but unsafe."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from authservice.conf import authservice_settings


@register()
def authservice_settings_check(app_configs, **kwargs):
    """The AUTHSERVICE dict loads: known keys, valid values, hooks that import."""
    authservice_settings.reload()
    try:
        authservice_settings.ISSUER  # noqa: B018  (loading validates every key)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="authservice.E001")]
    return []


def _key_encryption_keys() -> list[str] | None:
    try:
        return authservice_settings.KEY_ENCRYPTION_KEYS
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
            hint="Set AUTHSERVICE_KEY_ENCRYPTION_KEY to a dedicated secret (e.g. a Fernet key).",
            id="authservice.W001",
        )
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
    from authservice.signing_keys import undecryptable_keys

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


@register(Tags.security, deploy=True)
def issuer_https_check(app_configs, **kwargs):
    issuer = settings.AUTHSERVICE.get("ISSUER", "")
    if getattr(settings, "SECURE_HTTPS", False) and not issuer.startswith("https://"):
        return [
            Warning(
                "AUTHSERVICE_ISSUER is not an https URL while DJANGO_SECURE_HTTPS is on.",
                id="authservice.W002",
            )
        ]
    return []
