"""System checks for configuration that is legal but unsafe."""

from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import staticfiles_storage
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
            hint="Set AUTHSERVICE_KEY_ENCRYPTION_KEY to a dedicated key: 32 random bytes, e.g. a Fernet key.",
            id="authservice.W001",
        )
    ]


@register()
def legacy_key_encryption_key_check(app_configs, **kwargs):
    """A passphrase after the first key-encryption key only decrypts (the first one, random,
    is enforced at start-up): it is there to migrate, and should leave once it has."""
    from authservice.signing_keys import RANDOM_KEY_RULE, is_random_key

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


# What collectstatic skips by default.
STATIC_IGNORE_PATTERNS = ["CVS", ".*", "*~"]


def _uncollected_static_files() -> str | None:
    """Why the pages' static files cannot be served, or None when they can."""
    manifest = getattr(staticfiles_storage, "manifest_name", None)
    if manifest is None:
        root = Path(settings.STATIC_ROOT) if settings.STATIC_ROOT else None
        if root is None or not root.is_dir() or not any(root.iterdir()):
            return f"STATIC_ROOT ({root}) is empty"
        return None
    try:
        collected, _ = staticfiles_storage.load_manifest()
    except ValueError:
        return f"the manifest {manifest} in STATIC_ROOT cannot be read"
    if not collected:
        return f"STATIC_ROOT ({settings.STATIC_ROOT}) has no manifest {manifest}"
    missing = sorted({path for finder in finders.get_finders()
                      for path, _ in finder.list(STATIC_IGNORE_PATTERNS)} - set(collected))
    if missing:
        return (f"{len(missing)} static file(s) are missing from the manifest (collected before an upgrade?), "
                f"e.g. {missing[0]}")
    return None


@register()
def static_files_collected_check(app_configs, **kwargs):
    """The hashed-manifest storage makes every page that names a static file missing from
    the manifest a 500 (the admin login, /registry/v1/docs and /redoc), so say so before."""
    if settings.DEBUG:
        return []
    problem = _uncollected_static_files()
    if problem is None:
        return []
    return [
        Warning(
            f"Static files are not collected: {problem}. The admin and the API docs answer 500 until they are.",
            hint="Run `python manage.py collectstatic --noinput` on every deployment, after each upgrade.",
            id="authservice.W003",
        )
    ]
