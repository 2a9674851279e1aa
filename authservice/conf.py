"""The service's own settings: one namespaced ``AUTHSERVICE`` dict with safe defaults.

Read through ``authservice_settings.NAME``. Unknown keys are refused at start-up and the
object reloads on ``setting_changed`` so ``override_settings(AUTHSERVICE=...)`` works.
"""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

SUPPORTED_SIGNING_ALGS = ("RS256", "ES256")

DEFAULTS: dict[str, Any] = {
    # The `iss` of every token; may carry a path (https://auth.example/realms/ocen).
    "ISSUER": "http://127.0.0.1:8000",
    # Lifetime of access tokens, seconds.
    "ACCESS_TOKEN_TTL": 900,
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
    # How long a process reuses the loaded signing key before looking for a newer one.
    "SIGNER_CACHE_SECONDS": 10,
    # Accept http:// participant API base URLs (development only).
    "REGISTRY_ALLOW_HTTP_ENDPOINTS": False,
    # Dotted path of the function returning the audiences/scopes a client may be granted.
    # (The registry's: clients owned by participants get what their mappings allow;
    # other clients fall back to authservice.grants.default_grants.)
    "GRANTS_PROVIDER": "registry.grants.participant_grants",
    # Dotted path of the function returning a client's registered public keys
    # (signing.jws.VerificationKey) for private_key_jwt.
    "CLIENT_KEYS_PROVIDER": "registry.grants.client_verification_keys",
    # Longest lifetime accepted for a private_key_jwt client assertion, seconds.
    "MAX_CLIENT_ASSERTION_LIFETIME": 300,
}


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


authservice_settings = AuthServiceSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUTHSERVICE":
        authservice_settings.reload()


setting_changed.connect(_reload)
