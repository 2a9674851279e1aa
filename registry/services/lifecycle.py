"""The steps every registry writer shares: lock the participant row, check a lifecycle
transition, write the new status with its audit event, record the makers of a pending
application (four-eyes), and save a row validated, a unique-constraint race refused."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from authservice.conf import authservice_settings
from registry.audit import actor_user, record_event
from registry.four_eyes import PENDING, is_maker
from registry.models import TRANSITIONS, Participant, Status


class FourEyesRequired(ValidationError):
    """Refused because a second operator must act (``AUTHSERVICE["FOUR_EYES"]``)."""


def _four_eyes(four_eyes: bool | None) -> bool:
    return authservice_settings.FOUR_EYES if four_eyes is None else four_eyes


def _transition(participant: Participant, target: str) -> None:
    if target not in TRANSITIONS[participant.status]:
        raise ValidationError(
            f"A participant that is {participant.get_status_display().lower()} cannot become "
            f"{Status(target).label.lower()}."
        )


def _locked(participant: Participant) -> Participant:
    """Re-read the participant under a row lock: two admins cannot act on stale state.

    Related rows are loaded after the lock, not joined into it: PostgreSQL re-checks
    only the locked row when a lock wait ends, so joined columns could be stale.
    """
    return Participant.objects.select_for_update().get(pk=participant.pk)


def _snapshot(participant: Participant) -> dict:
    return {
        "status": participant.status,
        "role": participant.role,
        "participant_id": str(participant.participant_id),
        "client_id": participant.client.client_id if participant.client_id else None,
    }


def _add_maker(participant: Participant, acting_user) -> None:
    """Four-eyes over content: who changes a pending application becomes one of its
    makers, and so may not approve it."""
    user = actor_user(acting_user)
    if user is None or participant.status not in PENDING or is_maker(participant, user):
        return
    participant.makers = [*(participant.makers or []), {"id": user.pk, "username": user.get_username()}]
    participant.save(update_fields=["makers"])


def _save(instance) -> None:
    """full_clean then save; a race on a unique constraint becomes a ValidationError."""
    instance.full_clean()
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        raise ValidationError(f"This {instance._meta.verbose_name} conflicts with an existing one.") from exc


def _required_reason(reason: str, doing: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(f"A reason is required to {doing}.")
    return reason


def _set_status(participant: Participant, *, status: str, reason: str, action: str, acting_user,
                before: dict, details: dict | None = None) -> Participant:
    """Write a lifecycle transition the caller has checked (and whose cached answers it
    has marked stale), then its audit event."""
    participant.status, participant.status_changed_at = status, timezone.now()
    participant.status_reason = reason
    participant.save(update_fields=["status", "status_changed_at", "status_reason", "updated_at"])
    after = {**_snapshot(participant), **({"reason": reason} if reason else {}), **(details or {})}
    record_event(action=action, acting_user=acting_user, participant=participant, before=before, after=after)
    return participant


def _require_live(participant: Participant) -> None:
    if participant.status in (Status.OFFBOARDED, Status.REJECTED):
        raise ValidationError(f"The participant is {participant.get_status_display().lower()}.")


def _require_client(participant: Participant, doing: str) -> None:
    if participant.status not in (Status.APPROVED, Status.SUSPENDED) or participant.client is None:
        raise ValidationError(f"Only an approved or suspended participant has a client {doing}.")
