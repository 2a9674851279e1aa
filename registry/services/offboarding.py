"""Offboarding, final: keys revoked, endpoints, mappings and the OAuth client removed,
in one step or, under four-eyes, requested by one operator and confirmed by another."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from authservice.clients import client_delete
from registry.audit import actor_user, record_event
from registry.invalidation import participant_changed
from registry.models import AuditAction, KeyStatus, Participant, ResourceMapping, Status
from registry.services.lifecycle import (
    FourEyesRequired,
    _four_eyes,
    _locked,
    _required_reason,
    _set_status,
    _snapshot,
    _transition,
)


@transaction.atomic
def participant_offboard(*, participant: Participant, reason: str, acting_user,
                         four_eyes: bool | None = None) -> dict:
    """The four offboarding steps, all or nothing. Returns what was removed.

    With four-eyes (``four_eyes``, by default ``AUTHSERVICE["FOUR_EYES"]``) one operator
    cannot offboard alone: ``participant_offboard_request`` then, by another operator,
    ``participant_offboard_confirm``. Scripts (the ``offboard`` command) pass False.
    """
    reason = _required_reason(reason, "offboard a participant")
    if _four_eyes(four_eyes):
        raise FourEyesRequired("Four-eyes offboarding: request the offboarding; another operator confirms it.")
    participant = _locked(participant)
    return _offboard(participant, reason=reason, acting_user=acting_user)


def _offboard(participant: Participant, *, reason: str, acting_user, details: dict | None = None) -> dict:
    """Offboard a participant the caller has locked."""
    from registry.selectors import offboarding_plan

    before = _snapshot(participant)
    _transition(participant, Status.OFFBOARDED)
    plan = offboarding_plan(participant)
    participant_changed(participant, as_provider=True)  # before its client and mappings go
    participant.keys.filter(status=KeyStatus.ACTIVE).update(status=KeyStatus.REVOKED, revoked_at=timezone.now())
    participant.endpoints.all().delete()
    ResourceMapping.objects.filter(Q(client=participant) | Q(provider=participant)).delete()
    if participant.client is not None:
        client_delete(client=participant.client)
        participant.client = None
    _clear_offboarding_request(participant)
    _set_status(participant, status=Status.OFFBOARDED, reason=reason, action=AuditAction.PARTICIPANT_OFFBOARDED,
                acting_user=acting_user, before=before, details={"removed": plan, **(details or {})})
    return plan


def _clear_offboarding_request(participant: Participant) -> None:
    participant.offboarding_requested_by = participant.offboarding_requested_at = None
    participant.offboarding_reason = ""
    participant.save(update_fields=["offboarding_requested_by", "offboarding_requested_at", "offboarding_reason"])


def _requester_label(participant: Participant) -> str:
    user = participant.offboarding_requested_by
    return user.get_username() if user is not None else "system"


@transaction.atomic
def participant_offboard_request(*, participant: Participant, reason: str, acting_user) -> Participant:
    """First of the two four-eyes offboarding steps: record who asks and why. Nothing
    is removed until another operator confirms (``participant_offboard_confirm``)."""
    reason = _required_reason(reason, "request offboarding")
    participant = _locked(participant)
    _transition(participant, Status.OFFBOARDED)  # refuses what cannot be offboarded, before anything is written
    if participant.offboarding_requested:
        raise ValidationError(f"Offboarding was already requested by {_requester_label(participant)}; "
                              f"confirm or withdraw that request.")
    participant.offboarding_requested_by = actor_user(acting_user)
    participant.offboarding_requested_at = timezone.now()
    participant.offboarding_reason = reason
    participant.save(update_fields=["offboarding_requested_by", "offboarding_requested_at", "offboarding_reason"])
    record_event(action=AuditAction.OFFBOARDING_REQUESTED, acting_user=acting_user, participant=participant,
                 after={"status": participant.status, "reason": reason,
                        "requested_at": participant.offboarding_requested_at.isoformat()})
    return participant


@transaction.atomic
def participant_offboard_confirm(*, participant: Participant, acting_user, four_eyes: bool | None = None) -> dict:
    """Second step: another operator than the requester offboards, for the requested
    reason. Returns what was removed."""
    participant = _locked(participant)
    if not participant.offboarding_requested:
        raise ValidationError("No offboarding has been requested for this participant.")
    user = actor_user(acting_user)
    if _four_eyes(four_eyes) and user is not None and participant.offboarding_requested_by_id == user.pk:
        raise FourEyesRequired("Four-eyes offboarding: you requested this offboarding, so another operator "
                               "must confirm it.")
    requested = {"requested_by": _requester_label(participant),
                 "requested_at": participant.offboarding_requested_at.isoformat()}
    return _offboard(participant, reason=participant.offboarding_reason, acting_user=acting_user,
                     details={"offboarding_request": requested})


@transaction.atomic
def participant_offboard_cancel(*, participant: Participant, acting_user) -> Participant:
    """Withdraw a pending offboarding request (the requester or another operator)."""
    participant = _locked(participant)
    if not participant.offboarding_requested:
        raise ValidationError("No offboarding has been requested for this participant.")
    before = {"reason": participant.offboarding_reason, "requested_by": _requester_label(participant),
              "requested_at": participant.offboarding_requested_at.isoformat()}
    _clear_offboarding_request(participant)
    record_event(action=AuditAction.OFFBOARDING_CANCELLED, acting_user=acting_user, participant=participant,
                 before=before)
    return participant
