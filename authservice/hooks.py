"""What a client may be granted: audiences, the scopes at each, and identity claims.

Scopes and audiences are never free: the token endpoint grants only what the
configured hook (``AUTHSERVICE["GRANTS_PROVIDER"]``) returns for the client. The
defaults here serve a service without a registry; the project's settings name the
registry's hooks (``registry.oauth_hooks``).
"""

from dataclasses import dataclass, field
from typing import Any

from authservice.conf import authservice_settings


@dataclass(frozen=True)
class ClientGrants:
    # audience -> the scopes the client may use there
    scopes_by_audience: dict[str, frozenset[str]]
    # extra claims identifying the client (participantId, participant_role, org_id)
    claims: dict[str, Any] = field(default_factory=dict)
    # the audience identifiers under which this client acts as a resource server
    identities: frozenset[str] = frozenset()

    @property
    def all_scopes(self) -> frozenset[str]:
        return frozenset().union(*self.scopes_by_audience.values())


# The registry's scopes: ``REGISTRY_SCOPE`` and every scope of its namespace. They are
# granted at the registry's audience only, and nothing else is, so a token that names
# one provider and the registry carries no scope the provider did not grant but these.
REGISTRY_SCOPE_NAMESPACE = "registry."


def is_registry_scope(scope: str) -> bool:
    return scope == authservice_settings.REGISTRY_SCOPE or scope.startswith(REGISTRY_SCOPE_NAMESPACE)


def default_grants(client) -> ClientGrants:
    """Every active client may read the registry; nothing else without the registry app."""
    return ClientGrants(
        scopes_by_audience={
            authservice_settings.REGISTRY_AUDIENCE: frozenset({authservice_settings.REGISTRY_SCOPE})
        },
        identities=frozenset(),
    )


def no_client_keys(client) -> list:
    """Service accounts have no registered keys, so no private_key_jwt."""
    return []
