"""Signing's settings: the keys of the ``AUTHSERVICE`` settings dict that this app reads.

Their defaults and validation are here. ``authservice.conf``, which owns the whole dict
(and refuses unknown keys), merges both into its own and registers its settings object
as the one ``signing_settings`` reads through (``read_through``): one reading of the
dict, and a dict that does not load (``authservice.E001``) fails here too. Read through
``signing_settings.NAME``; reloaded on ``setting_changed`` so that
``override_settings(AUTHSERVICE=...)`` works.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

SUPPORTED_SIGNING_ALGS = ("RS256", "ES256")

DEFAULTS: dict[str, Any] = {
    # Lifetime of access tokens, seconds: their `exp` (authservice), and how long a retired
    # signing key stays in the JWKS. The one setting for both.
    "ACCESS_TOKEN_TTL": 900,
    # Clock skew allowed when validating tokens, seconds; a retired key stays published
    # this much longer too.
    "LEEWAY": 30,
    # Algorithm of newly generated service signing keys.
    "SIGNING_ALG": "RS256",
    # Cache-Control max-age of the JWKS and discovery documents. A next key must have
    # been published at least this long before it may start signing.
    "JWKS_MAX_AGE": 300,
    # Key-encryption keys for the service's private keys (first encrypts, all decrypt).
    "KEY_ENCRYPTION_KEYS": [],
    # HMAC keys of the audit log's chain links and checkpoints (first keys new links, all
    # verify). Empty: derived from the key-encryption keys (or SECRET_KEY), see registry.audit.
    "AUDIT_KEYS": [],
    # How long a process reuses the loaded signing key before looking for a newer one.
    "SIGNER_CACHE_SECONDS": 10,
    # Hook: function(*, action, before, after), called inside the transaction of every
    # change to the service's signing keys (signing.keys.SigningKeyEvent).
    # The project's settings name the registry's audit log.
    "SIGNING_KEY_EVENT_RECORDER": "signing.keys.ignore_key_event",
}

# Settings holding a dotted path, imported once and served as the object itself.
IMPORT_STRINGS = frozenset({"SIGNING_KEY_EVENT_RECORDER"})


def validated(merged: dict[str, Any]) -> dict[str, Any]:
    """``merged`` (the ``AUTHSERVICE`` dict over ``DEFAULTS``) with signing's keys checked
    and normalised; ``ImproperlyConfigured`` naming the first bad one."""
    if merged["SIGNING_ALG"] not in SUPPORTED_SIGNING_ALGS:
        raise ImproperlyConfigured(f"AUTHSERVICE SIGNING_ALG must be one of {', '.join(SUPPORTED_SIGNING_ALGS)}")
    if not isinstance(merged["AUDIT_KEYS"], list | tuple) or not all(
            isinstance(key, str) and key for key in merged["AUDIT_KEYS"]):
        raise ImproperlyConfigured("AUTHSERVICE AUDIT_KEYS must be a list of non-empty strings")
    merged = {**merged, "KEY_ENCRYPTION_KEYS": _key_encryption_keys(merged["KEY_ENCRYPTION_KEYS"])}
    for name in IMPORT_STRINGS:
        merged[name] = imported(name, merged[name])
    return merged


def _key_encryption_keys(value: Any) -> list[str]:
    """Trimmed, non-empty strings: a stray space or newline must not make another key."""
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ImproperlyConfigured("AUTHSERVICE KEY_ENCRYPTION_KEYS must be a list of strings")
    return [item.strip() for item in value if item.strip()]


def imported(name: str, value: Any) -> Any:
    """The object a dotted-path setting names (a value that is not a string as it is)."""
    if not isinstance(value, str):
        return value
    try:
        return import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(f"AUTHSERVICE {name} names {value!r}, which cannot be imported: {exc}") from exc


class SigningSettings:
    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None
        self._source: Any = None

    def read_through(self, source: Any) -> None:
        """Serve every value from ``source``, the project's reader of the whole dict (its
        values for these keys are ``validated`` ones), instead of reading the dict here."""
        self._source = source

    def _load(self) -> dict[str, Any]:
        user = getattr(settings, "AUTHSERVICE", {})
        return validated({**DEFAULTS, **{name: value for name, value in user.items() if name in DEFAULTS}})

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(name)
        if self._source is not None:
            return getattr(self._source, name)
        if self._cache is None:
            self._cache = self._load()
        return self._cache[name]

    def reload(self) -> None:
        self._cache = None
        if self._source is not None:
            self._source.reload()


signing_settings = SigningSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUTHSERVICE":
        signing_settings.reload()


setting_changed.connect(_reload)
