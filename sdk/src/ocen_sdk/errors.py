"""What the SDK raises when the Auth Service or the registry refuses or cannot be
reached. Every error is an ``OCENError`` (``ocen_sdk.jws``) with a stable ``code``."""

from __future__ import annotations

from ocen_sdk.jws import OCENError

__all__ = [
    "OCENError",
    "ProviderUnknown",
    "RegistryError",
    "RegistryTokenRefused",
    "RegistryUnreachable",
    "TokenRequestError",
]


class TokenRequestError(OCENError):
    """The token endpoint refused to issue a token (``error`` is its RFC 6749 code)."""

    code = "ERR_TOKEN_REQUEST"

    def __init__(self, status: int, error: str, description: str = "", hint: str = "") -> None:
        message = f"token request failed ({status} {error}): {description}"
        super().__init__(f"{message} {hint}".strip())
        self.status, self.error, self.description = status, error, description


class RegistryError(OCENError):
    """The registry could not be reached or answered unexpectedly."""

    code = "ERR_REGISTRY"


class RegistryUnreachable(RegistryError):
    code = "ERR_REGISTRY_UNREACHABLE"


class RegistryTokenRefused(RegistryError):
    """The registry refused the access token: most often one obtained for another
    audience (the registry needs ``resource=urn:ocen:registry``)."""

    code = "ERR_REGISTRY_TOKEN"


class ProviderUnknown(RegistryError):
    """The participant to call is not in the registry, or not APPROVED: nothing was sent."""

    code = "ERR_PROVIDER_UNKNOWN"
