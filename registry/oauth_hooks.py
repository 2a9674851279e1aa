"""The registry's hooks into the token endpoint (named in settings.AUTHSERVICE):
what a participant's client may be granted, and the keys it may authenticate with.

Audiences and scopes come only from the participant's resource mappings to approved
providers (or to the registry). Clients that belong to no participant are service
accounts and keep the default grant.
"""

import logging
from dataclasses import replace

from django.core.exceptions import ValidationError
from django.utils import timezone

from authservice.conf import authservice_settings
from authservice.hooks import ClientGrants, default_grants, is_registry_scope
from ocen_sdk.jws import VerificationKey
from ocen_sdk.key_loading import verification_key_from_jwk
from registry.key_material import check_key_strength
from registry.models import KeyStatus, Participant, PublicKey, ResourceMapping, Status, participant_audience

logger = logging.getLogger(__name__)


def participant_grants(client) -> ClientGrants:
    participant = (
        Participant.objects.select_related("organisation").filter(client_id=client.pk).first()
    )
    if participant is None:
        return default_grants(client)
    if participant.status != Status.APPROVED:
        return ClientGrants(scopes_by_audience={})
    scopes_by_audience: dict[str, frozenset[str]] = {}
    mappings = ResourceMapping.objects.filter(client=participant).select_related("provider")
    for mapping in mappings:
        # The registry's scopes are usable at the registry only, and nothing else is there
        # (authservice.hooks.is_registry_scope), mappings from before grants were vetted too.
        registry_scopes = frozenset(filter(is_registry_scope, mapping.scope_set))
        if mapping.provider_id is None:
            audience, scopes = authservice_settings.REGISTRY_AUDIENCE, registry_scopes
        elif mapping.provider.status == Status.APPROVED:
            audience = participant_audience(mapping.provider.participant_id)
            scopes = mapping.scope_set - registry_scopes
        else:
            continue
        if scopes:
            scopes_by_audience[audience] = scopes_by_audience.get(audience, frozenset()) | scopes
    return ClientGrants(
        scopes_by_audience=scopes_by_audience,
        claims={
            "participantId": str(participant.participant_id),
            "participant_role": participant.role,
            "org_id": str(participant.organisation.org_id),
        },
        identities=frozenset({participant_audience(participant.participant_id)}),
    )


def client_verification_keys(client) -> list[VerificationKey]:
    """The participant's active registered keys, for private_key_jwt client authentication."""
    now = timezone.now()
    keys = (PublicKey.objects.filter(participant__client_id=client.pk, participant__status=Status.APPROVED,
                                     status=KeyStatus.ACTIVE).exclude(not_after__lt=now))
    usable = []
    for key in keys:
        verification_key = verification_key_from_jwk(key.public_jwk, owner=client.client_id)
        try:
            check_key_strength(verification_key.key)
        except ValidationError:
            # Registered before the registry refused such keys: anyone could sign for it.
            logger.warning("registered key kid=%s of client_id=%s fails key vetting and is not used; revoke it",
                           key.kid, client.client_id)
            continue
        usable.append(replace(verification_key, not_after=key.not_after.timestamp() if key.not_after else None))
    return usable
