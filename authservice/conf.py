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

from signing.conf import DEFAULTS as SIGNING_DEFAULTS
from signing.conf import (
    SUPPORTED_SIGNING_ALGS,  # noqa: F401  (its old home; signing owns it)
    imported,
    signing_settings,
    validated,
)

ACCESS_TOKEN_TYPS = ("at+jwt", "JWT")

DEFAULTS: dict[str, Any] = {
    # The `iss` of every token; may carry a path (https://auth.example/realms/ocen).
    "ISSUER": "http://127.0.0.1:8000",
    # The access token's `typ` header: "at+jwt" (RFC 9068) or "JWT" (for OCEN reference
    # resource servers on Spring Security 5, which refuse at+jwt).
    "ACCESS_TOKEN_TYP": "at+jwt",
    # The audience of the registry API and the scope every active participant gets there.
    "REGISTRY_AUDIENCE": "urn:ocen:registry",
    "REGISTRY_SCOPE": "registry.read",
    # Largest body accepted by the OAuth endpoints, bytes.
    "MAX_OAUTH_BODY_BYTES": 8192,
    # Accept http:// participant API base URLs (development only).
    "REGISTRY_ALLOW_HTTP_ENDPOINTS": False,
    # Hook: function(client) -> authservice.hooks.ClientGrants, what a client may be
    # granted. The project's settings name the registry's (grants from resource mappings).
    "GRANTS_PROVIDER": "authservice.hooks.default_grants",
    # Hook: function(client) -> list[ocen_sdk.jws.VerificationKey], a client's registered
    # public keys for private_key_jwt. The project's settings name the registry's.
    "CLIENT_KEYS_PROVIDER": "authservice.hooks.no_client_keys",
    # Longest lifetime accepted for a private_key_jwt client assertion, seconds.
    "MAX_CLIENT_ASSERTION_LIFETIME": 300,
    # Failed client authentication at the token, introspection and revocation endpoints
    # (authservice.lockouts): this many failures for one client_id from one address
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
    # Hook: function(*, lockout: authservice.lockouts.Lockout), told once when a
    # lockout starts. The project's settings name the registry's (an audit event).
    "LOCKOUT_AUDITOR": "authservice.lockouts.no_lockout_audit",
    # Four-eyes in the registry admin: who recorded or reviewed an application cannot
    # approve it, and an offboarding one operator requests another must confirm.
    # Management commands stay single-step.
    "FOUR_EYES": True,
    # Hook: function(*, client_id: str, issued: bool), told of every token request whose
    # client authenticated (issued) or failed to (not issued; client_id as presented).
    # Must be cheap: it runs on the token endpoint. The project's settings name the
    # registry's activity counters.
    "TOKEN_ACTIVITY_RECORDER": "authservice.conf.no_token_activity",
    # The signing app's keys (signing.conf: the token lifetime and leeway, which also say
    # how long a retired key stays published, the signing algorithm, the JWKS max-age,
    # the key-encryption and audit keys, the signer cache and the key event hook).
    **SIGNING_DEFAULTS,
}


# Settings holding a dotted path, imported once and served as the object itself.
# (signing.conf imports its own.)
IMPORT_STRINGS = frozenset({"GRANTS_PROVIDER", "CLIENT_KEYS_PROVIDER", "LOCKOUT_AUDITOR", "TOKEN_ACTIVITY_RECORDER"})
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
        merged = validated({**DEFAULTS, **user})
        if merged["ACCESS_TOKEN_TYP"] not in ACCESS_TOKEN_TYPS:
            raise ImproperlyConfigured(
                f"AUTHSERVICE ACCESS_TOKEN_TYP must be one of {', '.join(ACCESS_TOKEN_TYPS)}"
            )
        _check_auth_limits(merged)
        if not isinstance(merged["FOUR_EYES"], bool):
            raise ImproperlyConfigured("AUTHSERVICE FOUR_EYES must be True or False")
        merged["TRUSTED_PROXIES"] = _networks(merged["TRUSTED_PROXIES"])
        for name in IMPORT_STRINGS:
            merged[name] = imported(name, merged[name])
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


def no_token_activity(*, client_id: str, issued: bool) -> None:
    """The default ``TOKEN_ACTIVITY_RECORDER``: nothing is counted."""


authservice_settings = AuthServiceSettings()
# The signing app reads its keys of the dict through this object.
signing_settings.read_through(authservice_settings)


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUTHSERVICE":
        authservice_settings.reload()


setting_changed.connect(_reload)
