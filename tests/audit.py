"""Asserting the audit trail exactly: one event per change, with its actor, action,
participant, and before/after, nothing more."""

from typing import Any

from registry.models import AuditEvent


class AuditTrail:
    """The audit events written since this object was made."""

    def __init__(self) -> None:
        last = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
        self.start = last or 0

    def new_events(self) -> list[AuditEvent]:
        return list(AuditEvent.objects.filter(sequence__gt=self.start).order_by("sequence"))

    def assert_none(self) -> None:
        events = self.new_events()
        assert not events, f"expected no audit event, got {[event.action for event in events]}"

    def assert_one(self, *, action: str, actor, before: dict[str, Any], after: dict[str, Any],
                   participant=None, actor_label: str | None = None) -> AuditEvent:
        events = self.new_events()
        assert [event.action for event in events] == [action]
        (event,) = events
        assert event.actor == actor
        assert event.actor_label == (actor_label or (actor.get_username() if actor else "system"))
        if participant is not None:
            assert event.participant_id == participant.pk
        assert event.before == before
        assert event.after == after
        return event
