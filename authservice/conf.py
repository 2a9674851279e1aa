"""The service's own settings: one namespaced ``AUTHSERVICE`` dict with safe defaults.

Read through ``authservice_settings.NAME``. Unknown keys are refused, hooks named by
dotted path (``IMPORT_STRINGS``) are imported once, and a bad value of either fails
``manage.py check`` (``authservice.E001``). The object reloads on ``setting_changed``
so ``override_settings(AUTHSERVICE=...)`` works.
"""

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

SUPPORTED_SIGNING_ALGS = ("RS256", "ES256")
ACCESS_TOKEN_TYPS = ("at+jwt", "JWT")

DEFAULTS: dict[str, Any] = {
    # The `iss` of every token; may carry a path (https://auth.example/realms/ocen).
    "ISSUER": "http://127.0.0.1:8000",
    # Lifetime of access tokens, seconds: their `exp`, and how long a retired signing
    # key stays in the JWKS. The one setting for both.
    "ACCESS_TOKEN_TTL": 900,
    # The access token's `typ` header: "at+jwt" (RFC 9068) or "JWT" (for OCEN reference
    # resource servers on Spring Security 5, which refuse at+jwt).
    "ACCESS_TOKEN_TYP": "at+jwt",
    # Algorithm of newly generated service signing keys.
    "SIGNING_ALG": "RS256",
    # Cache-Control max-age of the JWKS and discovery documents. A next key must have
    # been published at least this long before it may start signing.
    "JWKS_MAX_AGE": 300,
    # Clock skew allowed when validating tokens, seconds.
    "LEEWAY": 30,
    # The audience of the registry API and the scope every active participant gets there.
    "REGISTRY_AUDIENCE": "urn:ocen:registry",
    "REGISTRY_SCOPE": "registry.read",
    # Largest body accepted by the OAuth endpoints, bytes.
    "MAX_OAUTH_BODY_BYTES": 8192,
    # Key-encryption keys for the service's private keys (first encrypts, all decrypt).
    "KEY_ENCRYPTION_KEYS": [],
    # HMAC keys of the audit log's chain links and checkpoints (first keys new links, all
    # verify). Empty: derived from the key-encryption keys (or SECRET_KEY), see registry.audit.
    "AUDIT_KEYS": [],
    # How long a process reuses the loaded signing key before looking for a newer one.
    "SIGNER_CACHE_SECONDS": 10,
    # Accept http:// participant API base URLs (development only).
    "REGISTRY_ALLOW_HTTP_ENDPOINTS": False,
    # Hook: function(client) -> authservice.grants.ClientGrants, what a client may be
    # granted. The project's settings name the registry's (grants from resource mappings).
    "GRANTS_PROVIDER": "authservice.grants.default_grants",
    # Hook: function(client) -> list[ocen_sdk.jws.VerificationKey], a client's registered
    # public keys for private_key_jwt. The project's settings name the registry's.
    "CLIENT_KEYS_PROVIDER": "authservice.grants.no_client_keys",
    # Longest lifetime accepted for a private_key_jwt client assertion, seconds.
    "MAX_CLIENT_ASSERTION_LIFETIME": 300,
    # Hook: function(*, action, before, after), called inside the transaction of every
    # change to the service's signing keys (authservice.signing_keys.SigningKeyEvent).
    # The project's settings name the registry's audit log.
    "SIGNING_KEY_EVENT_RECORDER": "authservice.signing_keys.ignore_key_event",
    # Failed client authentication at the token, introspection and revocation endpoints
    # (authservice.auth_limits): this many failures for one client_id from one address
    # within AUTH_FAILURE_WINDOW seconds lock that pair out for AUTH_LOCKOUT_SECONDS;
    # AUTH_FAILURE_LIMIT_PER_ADDRESS failures from one address, whatever the client_id,
    # lock the address out. Never the client_id alone: that would let anyone who knows
    # it lock the participant out.
    "AUTH_FAILURE_LIMIT": 20,
    "AUTH_FAILURE_LIMIT_PER_ADDRESS": 100,
    "AUTH_FAILURE_WINDOW": 300,
    "AUTH_LOCKOUT_SECONDS": 300,
    # Proxies (IP addresses or CIDR networks) whose X-Forwarded-For is believed. Empty:
    # the client's address is the direct peer's (REMOTE_ADDR).
    "TRUSTED_PROXIES": [],
    # Hook: function(*, lockout: authservice.auth_limits.Lockout), told once when a
    # lockout starts. The project's settings name the registry's (an audit event).
    "LOCKOUT_AUDITOR": "authservice.auth_limits.no_lockout_audit",
    # Four-eyes in the registry admin: who recorded or reviewed an application cannot
    # approve it, and an offboarding one operator requests another must confirm.
    # Management commands stay single-step.
    "FOUR_EYES": True,
    # Hook: function(*, client_id: str, issued: bool), told of every token request whose
    # client authenticated (issued) or failed to (not issued; client_id as presented).
    # Must be cheap: it runs on the token endpoint. The project's settings name the
    # registry's activity counters.
    "TOKEN_ACTIVITY_RECORDER": "authservice.conf.no_token_activity",
}


# Settings holding a dotted path, imported once and served as the object itself.
IMPORT_STRINGS = frozenset({"GRANTS_PROVIDER", "CLIENT_KEYS_PROVIDER", "SIGNING_KEY_EVENT_RECORDER",
                            "LOCKOUT_AUDITOR", "TOKEN_ACTIVITY_RECORDER"})
POSITIVE_INTEGERS = ("AUTH_FAILURE_LIMIT", "AUTH_FAILURE_LIMIT_PER_ADDRESS", "AUTH_FAILURE_WINDOW",
                     "AUTH_LOCKOUT_SECONDS")


class AuthServiceSettings:
    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        user = getattr(settings, "AUTHSERVICE", {})
        unknown = set(user) - set(DEFAULTS)
        if unknown:
            raise ImproperlyConfigured(f"Unknown AUTHSERVICE settings: {', '.join(sorted(unknown))}")
        merged = {**DEFAULTS, **user}
        if merged["SIGNING_ALG"] not in SUPPORTED_SIGNING_ALGS:
            raise ImproperlyConfigured(
                f"AUTHSERVICE SIGNING_ALG must be one of {', '.join(SUPPORTED_SIGNING_ALGS)}"
            )
        if merged["ACCESS_TOKEN_TYP"] not in ACCESS_TOKEN_TYPS:
            raise ImproperlyConfigured(
                f"AUTHSERVICE ACCESS_TOKEN_TYP must be one of {', '.join(ACCESS_TOKEN_TYPS)}"
            )
        if not isinstance(merged["AUDIT_KEYS"], list | tuple) or not all(
                isinstance(key, str) and key for key in merged["AUDIT_KEYS"]):
            raise ImproperlyConfigured("AUTHSERVICE AUDIT_KEYS must be a list of non-empty strings")
        merged["KEY_ENCRYPTION_KEYS"] = _key_encryption_keys(merged["KEY_ENCRYPTION_KEYS"])
        _check_auth_limits(merged)
        if not isinstance(merged["FOUR_EYES"], bool):
            raise ImproperlyConfigured("AUTHSERVICE FOUR_EYES must be True or False")
        merged["TRUSTED_PROXIES"] = _networks(merged["TRUSTED_PROXIES"])
        for name in IMPORT_STRINGS:
            merged[name] = _imported(name, merged[name])
        merged["ISSUER"] = merged["ISSUER"].rstrip("/")
        parts = urlsplit(merged["ISSUER"])
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
            raise ImproperlyConfigured("AUTHSERVICE ISSUER must be an http(s) URL without query or fragment")
        return merged

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(name)
        if self._cache is None:
            self._cache = self._load()
        return self._cache[name]

    @property
    def issuer_origin(self) -> str:
        parts = urlsplit(self.ISSUER)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def issuer_path(self) -> str:
        return urlsplit(self.ISSUER).path.rstrip("/")

    def reload(self) -> None:
        self._cache = None


def _key_encryption_keys(value: Any) -> list[str]:
    """Trimmed, non-empty strings: a stray space or newline must not make another key."""
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ImproperlyConfigured("AUTHSERVICE KEY_ENCRYPTION_KEYS must be a list of strings")
    return [item.strip() for item in value if item.strip()]


def _check_auth_limits(merged: dict[str, Any]) -> None:
    for name in POSITIVE_INTEGERS:
        value = merged[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ImproperlyConfigured(f"AUTHSERVICE {name} must be a positive integer")
    if merged["AUTH_FAILURE_LIMIT_PER_ADDRESS"] < merged["AUTH_FAILURE_LIMIT"]:
        raise ImproperlyConfigured("AUTHSERVICE AUTH_FAILURE_LIMIT_PER_ADDRESS must not be below AUTH_FAILURE_LIMIT")


def _networks(values: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if isinstance(values, str):
        raise ImproperlyConfigured("AUTHSERVICE TRUSTED_PROXIES must be a list of addresses or networks")
    try:
        return tuple(ipaddress.ip_network(str(value).strip(), strict=False) for value in values)
    except ValueError as exc:
        raise ImproperlyConfigured(f"AUTHSERVICE TRUSTED_PROXIES: {exc}") from exc


def _imported(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(f"AUTHSERVICE {name} names {value!r}, which cannot be imported: {exc}") from exc


def no_token_activity(*, client_id: str, issued: bool) -> None:
    """The default ``TOKEN_ACTIVITY_RECORDER``: nothing is counted."""


authservice_settings = AuthServiceSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUTHSERVICE":
        authservice_settings.reload()


setting_changed.connect(_reload)
