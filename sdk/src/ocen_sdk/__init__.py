"""ocen-sdk: what a participant's systems need to take part in an OCEN network.

    from ocen_sdk import OCENAuth, TokenManager, RegistryClient, ServiceKeys, ProviderGuard

One module per thing the SDK owns:

- ``ocen_sdk.tokens``: this participant's access tokens (``TokenManager``: client
  secret or private_key_jwt).
- ``ocen_sdk.service_keys``: the Auth Service's keys (``ServiceKeys``) and offline
  checks of its tokens (``AccessTokenVerifier``).
- ``ocen_sdk.registry``: participants from the registry (``RegistryClient``).
- ``ocen_sdk.client``: ``OCENAuth``, an httpx auth that signs every request and
  verifies every response.
- ``ocen_sdk.provider``: ``ProviderGuard``, the checks a provider makes on each
  request (any framework); ``ocen_sdk.django``: the same as Django middleware (not
  imported here: the only module that needs Django).
- ``ocen_sdk.jws``: the detached JWS/JWT core, on jwcrypto; ``ocen_sdk.wire``: the
  wire contract (what each signature covers and binds).
- ``ocen_sdk.key_loading``: keys from PEM and JWK; ``ocen_sdk.errors``: what the
  network calls raise.

``ocen_sdk.remote`` and ``ocen_sdk.http``, the former homes of these, still work.

Every network call has an asyncio twin (``aget``, ``aparticipant``, ``averify_request``,
``OCENAuth`` with ``httpx.AsyncClient``): one implementation (``ocen_sdk._flow``), run
blocking or awaited.

Depends on cryptography, jwcrypto and httpx only; Django only for ``ocen_sdk.django``.
"""

from ocen_sdk.client import OCENAuth, ResponseSignatureError
from ocen_sdk.errors import (
    ProviderUnknown,
    RegistryError,
    RegistryTokenRefused,
    RegistryUnreachable,
    TokenRequestError,
)
from ocen_sdk.jws import JWSError, OCENError
from ocen_sdk.key_loading import load_private_key
from ocen_sdk.provider import ProviderAuthError, ProviderGuard
from ocen_sdk.registry import ParticipantRecord, RegistryClient
from ocen_sdk.service_keys import AccessTokenVerifier, ServiceKeys, VerifiedToken
from ocen_sdk.tokens import TokenManager

__version__ = "0.3.0"

__all__ = [
    "AccessTokenVerifier",
    "JWSError",
    "OCENAuth",
    "OCENError",
    "ParticipantRecord",
    "ProviderAuthError",
    "ProviderGuard",
    "ProviderUnknown",
    "RegistryClient",
    "RegistryError",
    "RegistryTokenRefused",
    "RegistryUnreachable",
    "ResponseSignatureError",
    "ServiceKeys",
    "TokenManager",
    "TokenRequestError",
    "VerifiedToken",
    "load_private_key",
]
