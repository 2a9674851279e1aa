"""Suspension: a participant's client stops getting tokens and every token it holds is
refused, until it is reinstated."""

from django.core.exceptions import ValidationError
from django.db import transaction

from authservice import not_before
from authservice.clients import client_deactivate, client_reactivate
from registry.invalidation import participant_changed
from registry.models import AuditAction, Participant, Status
from registry.services.keys import _active_keys
from registry.services.lifecycle import _locked, _required_reason, _set_status, _snapshot, _transition


@transaction.atomic
def participant_suspend(*, participant: Participant, reason: str, acting_user) -> Participant:
    """The client can no longer get tokens, and every token it holds is refused, also
    after a reinstatement (its tokens-not-before moves to now)."""
    reason = _required_reason(reason, "suspend a participant")
    participant = _locked(participant)
    before = _snapshot(participant)
    _transition(participant, Status.SUSPENDED)
    # Also the grants of clients mapped to it; first, as it locks their rows and its own in order.
    participant_changed(participant, as_provider=True)
    cutoff = client_deactivate(client=participant.client)
    return _set_status(participant, status=Status.SUSPENDED, reason=reason,
                       action=AuditAction.PARTICIPANT_SUSPENDED, acting_user=acting_user, before=before,
                       details={"tokens_not_before": not_before.as_text(cutoff)})


@transaction.atomic
def participant_reinstate(*, participant: Participant, acting_user) -> Participant:
    participant = _locked(participant)
    before = _snapshot(participant)
    if participant.status != Status.SUSPENDED:
        raise ValidationError("Only a suspended participant can be reinstated.")
    if not _active_keys(participant).exists():
        raise ValidationError("The participant has no valid, active public key; add one before reinstating.")
    participant_changed(participant, as_provider=True)
    cutoff = client_reactivate(client=participant.client)
    return _set_status(participant, status=Status.APPROVED, reason="", action=AuditAction.PARTICIPANT_REINSTATED,
                       acting_user=acting_user, before=before,
                       details={"tokens_not_before": not_before.as_text(cutoff)})
