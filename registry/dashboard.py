"""The registry dashboard, the admin's home page: everything an operator checks first,
in a fixed handful of queries whatever the registry's size."""

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from authservice.conf import authservice_settings
from authservice.models import AuthFailureCounter
from registry.audit_status import ChainState, chain_state
from registry.four_eyes import pending_actions
from registry.models import (
    HOLDING_STATUSES,
    AuditAction,
    AuditEvent,
    KeyStatus,
    Participant,
    PublicKey,
    Role,
    Status,
)

EXPIRY_HORIZON = timedelta(days=30)
QUEUE_LIMIT = 25
EXPIRING_LIMIT = 25
RECENT_EVENTS = 10
LOCKOUT_LIMIT = 10


@dataclass(frozen=True)
class QueueEntry:
    participant: Participant
    waiting_since: datetime
    age: timedelta
    waiting_for: str  # the four-eyes sentence: what waits, and who may not take it
    step: str


@dataclass(frozen=True)
class ClientLockout:
    """A client-authentication lockout still running, as its audit event tells it."""

    client_id: str
    address: str
    endpoint: str
    locked_until: datetime
    event: AuditEvent


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    by_status: list[tuple[str, str, int]]  # (status, label, count), every status
    by_role: list[tuple[str, str, int]]  # (role, label, count) of live participants
    queue: list[QueueEntry]
    expiring_keys: list[PublicKey]
    recent_events: list[AuditEvent]
    client_lockouts: int
    client_lockout_details: list[ClientLockout]
    admin_lockouts: list[AccessAttempt]
    chain: ChainState


def _counts(field: str, queryset) -> dict[str, int]:
    return dict(queryset.values_list(field).annotate(n=Count("pk")).order_by())


def registry_dashboard() -> Dashboard:
    now = timezone.now()
    by_status = _counts("status", Participant.objects.all())
    by_role = _counts("role", Participant.objects.filter(status__in=HOLDING_STATUSES))
    expiring = (PublicKey.objects.filter(status=KeyStatus.ACTIVE, not_after__lte=now + EXPIRY_HORIZON,
                                         participant__status__in=HOLDING_STATUSES)
                .select_related("participant__organisation").order_by("not_after", "pk")[:EXPIRING_LIMIT])
    events = (AuditEvent.objects.select_related("participant__organisation", "organisation")
              .order_by("-sequence")[:RECENT_EVENTS])
    cool_off = timedelta(hours=float(getattr(settings, "AXES_COOLOFF_TIME", 0) or 0))
    admin_lockouts = AccessAttempt.objects.filter(failures_since_start__gte=settings.AXES_FAILURE_LIMIT)
    if cool_off:
        admin_lockouts = admin_lockouts.filter(attempt_time__gte=now - cool_off)
    return Dashboard(
        now=now,
        by_status=[(value, label, by_status.get(value, 0)) for value, label in Status.choices],
        by_role=[(value, label, by_role[value]) for value, label in Role.choices if by_role.get(value)],
        queue=[QueueEntry(participant=p, waiting_since=pending.since, age=now - pending.since,
                          waiting_for=pending.sentence, step=pending.step)
               for p, pending in pending_actions(limit=QUEUE_LIMIT)],
        expiring_keys=list(expiring),
        recent_events=list(events),
        client_lockouts=AuthFailureCounter.objects.filter(locked_until__gt=time.time()).count(),
        client_lockout_details=_running_client_lockouts(now),
        admin_lockouts=list(admin_lockouts.order_by("-attempt_time")[:LOCKOUT_LIMIT]),
        chain=chain_state(),
    )


def _running_client_lockouts(now: datetime) -> list[ClientLockout]:
    """Who is locked out: the lockout rows hold only hashed keys, their audit events
    (``LOCKOUT_AUDITOR``) the client id and address. One query."""
    started_since = now - timedelta(seconds=authservice_settings.AUTH_LOCKOUT_SECONDS)
    events = (AuditEvent.objects.filter(action=AuditAction.CLIENT_AUTH_LOCKOUT, occurred_at__gte=started_since)
              .order_by("-sequence")[:LOCKOUT_LIMIT])
    running = []
    for event in events:
        try:
            until = datetime.fromisoformat(event.after["locked_until"])
        except (KeyError, TypeError, ValueError):
            continue
        if until > now:
            running.append(ClientLockout(client_id=event.after.get("client_id") or "(any client)",
                                         address=event.after.get("address", "?"),
                                         endpoint=event.after.get("endpoint", ""), locked_until=until, event=event))
    return running
