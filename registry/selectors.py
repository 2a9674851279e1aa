"""Reads of the registry: what the API serves and what the admin shows before acting."""

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from registry.models import KeyStatus, Participant, PublicKey, ResourceMapping, Status


def active_keys_prefetch() -> Prefetch:
    now = timezone.now()
    return Prefetch(
        "keys",
        queryset=PublicKey.objects.filter(status=KeyStatus.ACTIVE).exclude(not_after__lt=now),
        to_attr="active_keys",
    )


def visible_participants() -> QuerySet[Participant]:
    """Participants the registry API shows: everyone but the offboarded."""
    return (
        Participant.objects.exclude(status=Status.OFFBOARDED)
        .select_related("organisation", "approved_by", "client")
        .prefetch_related("endpoints", active_keys_prefetch())
    )


def participant_list(*, role: str | None = None, status: str | None = None, org_id=None,
                     search: str | None = None) -> QuerySet[Participant]:
    queryset = visible_participants()
    if role:
        queryset = queryset.filter(role=role)
    if status:
        queryset = queryset.filter(status=status)
    if org_id:
        queryset = queryset.filter(organisation__org_id=org_id)
    if search:
        queryset = queryset.filter(organisation__legal_name__icontains=search)
    return queryset.order_by("organisation__legal_name", "role", "pk")


def participant_get(participant_id) -> Participant | None:
    return visible_participants().filter(participant_id=participant_id).first()


def published_keys(participant: Participant) -> list[PublicKey]:
    """The keys the registry API serves for a participant loaded by ``visible_participants``:
    its active keys while it is APPROVED, none otherwise (a suspended participant's
    signatures must not verify)."""
    return list(participant.active_keys) if participant.status == Status.APPROVED else []


def tokens_not_before(participant: Participant) -> datetime | None:
    """The instant before which the participant's tokens are refused, if any."""
    return participant.client.tokens_not_before if participant.client_id else None


def offboarding_plan(participant: Participant) -> dict:
    """Exactly what offboarding will remove, for the confirmation page and the audit event."""
    mappings = ResourceMapping.objects.filter(Q(client=participant) | Q(provider=participant)).select_related(
        "client__organisation", "provider__organisation"
    )
    return {
        "client_id": participant.client.client_id if participant.client_id else None,
        "keys": [key.kid for key in participant.keys.filter(status=KeyStatus.ACTIVE)],
        "endpoints": [endpoint.url for endpoint in participant.endpoints.all()],
        "mappings": [str(mapping) for mapping in mappings],
    }
