"""The tamper-evident audit log: append (inside the caller's transaction) and verify.

Each event's hash covers its content and the previous event's hash, so changing,
removing or reordering any row breaks the chain from that row on.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from registry.models import AuditAction, AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64


def actor_label_for(user) -> str:
    if user is None:
        return "system"
    return getattr(user, "get_username", lambda: str(user))() or str(user.pk)


def _event_digest(event: AuditEvent) -> str:
    content = {
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "participant_id": event.participant_id,
        "organisation_id": event.organisation_id,
        "before": event.before,
        "after": event.after,
        "prev_hash": event.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def record_event(*, action: str, acting_user, participant=None, organisation=None,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                 actor_label: str | None = None) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it records.

    Locks the chain head, so call it last: after the rows the change locks and the
    client generation (``authservice.clientcache.bump_generation``).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("Audit events are written inside the transaction of the change they record.")
    head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
    event = AuditEvent(
        sequence=head.sequence + 1,
        occurred_at=timezone.now(),
        actor=acting_user,
        actor_label=actor_label or actor_label_for(acting_user),
        action=action,
        participant=participant,
        organisation=organisation or (participant.organisation if participant is not None else None),
        before=before or {},
        after=after or {},
        prev_hash=head.last_hash,
    )
    event.hash = _event_digest(event)
    event.save(force_insert=True)
    head.sequence, head.last_hash = event.sequence, event.hash
    head.save(update_fields=["sequence", "last_hash"])
    return event


def record_signing_key_event(*, action: str, before: dict[str, Any], after: dict[str, Any]) -> AuditEvent:
    """``AUTHSERVICE["SIGNING_KEY_EVENT_RECORDER"]``: a change to the service's own signing
    keys (created, pre-published, activated, retired and erased, re-encrypted), made by
    an operator's command, so recorded as the system's."""
    return record_event(action=AuditAction(action), acting_user=None, before=before, after=after)


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain() -> ChainReport:
    """Recompute every hash in order; report the first broken link."""
    expected_prev = GENESIS_HASH
    expected_sequence = 1
    checked = 0
    for event in AuditEvent.objects.order_by("sequence").iterator(chunk_size=2000):
        if event.sequence != expected_sequence:
            return ChainReport(checked, event.sequence,
                               f"event #{expected_sequence} is missing (found #{event.sequence} next)")
        if event.prev_hash != expected_prev:
            return ChainReport(checked, event.sequence, "prev_hash does not match the previous event's hash")
        if _event_digest(event) != event.hash:
            return ChainReport(checked, event.sequence, "content does not match its hash (row was altered)")
        expected_prev = event.hash
        expected_sequence += 1
        checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and head.sequence != checked:
        return ChainReport(checked, checked + 1, f"the chain head records {head.sequence} events; "
                                                 f"{checked} remain (events were deleted from the end)")
    return ChainReport(checked)
