"""ocen-sdk: what a participant's systems need to take part in an OCEN network.

- ``ocen_sdk.remote``: access tokens (``TokenManager``: client secret or
  private_key_jwt), the Auth Service's keys (``ServiceKeys``), offline token checks
  (``AccessTokenVerifier``) and registry lookups (``RegistryClient``).
- ``ocen_sdk.client``: ``OCENAuth``, an httpx auth that signs every request and
  verifies every response.
- ``ocen_sdk.provider``: ``ProviderGuard``, the checks a provider makes on each
  request (any framework); ``ocen_sdk.django``: the same as Django middleware.
- ``ocen_sdk.jws``: the detached JWS/JWT core; ``ocen_sdk.http``: the wire contract.

Every network call has an asyncio twin (``aget``, ``aparticipant``, ``averify_request``,
``OCENAuth`` with ``httpx.AsyncClient``): one implementation (``ocen_sdk._flow``), run
blocking or awaited.

Depends on cryptography, jwcrypto and httpx only; Django only for ``ocen_sdk.django``.
"""

__version__ = "0.3.0"
