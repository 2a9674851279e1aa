"""Who must act next on a participant, and who may not (``AUTHSERVICE["FOUR_EYES"]``):
for the participant page and the dashboard. The services enforce the rule; this only
describes it.

Four-eyes is over content: whoever recorded a pending application or changed it since
(its endpoints, keys or organisation: ``Participant.makers``) may not approve it, nor
may whoever started its review. What an approval approves is ``approval_content``; its
SHA-256 (``approval_digest``) is shown on the approve page and recorded in the approval's
audit event.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.db.models.functions import Coalesce

from authservice.conf import authservice_settings
from registry.models import KeyStatus, Participant, Status

PENDING = (Status.APPLIED, Status.UNDER_REVIEW)


def approval_content(participant: Participant) -> dict[str, Any]:
    """Exactly what approving ``participant`` approves: its organisation, role, API base
    URLs, active keys (by RFC 7638 thumbprint) and the grants it already holds as a
    client (they take effect with the approval), in a canonical order."""
    organisation = participant.organisation
    keys = participant.keys.filter(status=KeyStatus.ACTIVE).order_by("thumbprint")
    grants = participant.mappings_as_client.select_related("provider")
    return {
        "participant_id": str(participant.participant_id),
        "organisation": {"org_id": str(organisation.org_id), "legal_name": organisation.legal_name},
        "role": participant.role,
        "endpoints": sorted(participant.endpoints.values_list("url", flat=True)),
        "keys": [{"kid": key.kid, "thumbprint": key.thumbprint, "alg": key.alg} for key in keys],
        "grants": sorted(({"audience": grant.audience, "scopes": grant.scopes} for grant in grants),
                         key=lambda grant: grant["audience"]),
    }


def content_digest(content: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``content`` (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def approval_digest(participant: Participant) -> str:
    return content_digest(approval_content(participant))


def is_maker(participant: Participant, user) -> bool:
    """Whether ``user`` recorded or changed ``participant``'s pending application."""
    return any(maker.get("id") == user.pk for maker in participant.makers or [])


@dataclass(frozen=True)
class PendingAction:
    """A step waiting for an operator."""

    step: str  # "review or approval", "approval" or "offboarding confirmation"
    since: datetime
    excluded_user_ids: frozenset[int]  # who may not take the step (four-eyes)
    excluded_usernames: tuple[str, ...]
    sentence: str

    def may_act(self, user) -> bool:
        """Whether four-eyes lets ``user`` take the step (permissions aside)."""
        return user.pk not in self.excluded_user_ids


def _names(usernames: list[str]) -> str:
    return usernames[0] if len(usernames) == 1 else f"{', '.join(usernames[:-1])} and {usernames[-1]}"


def _people(users: list) -> list[tuple[int, str]]:
    return [(user.pk, user.get_username()) for user in users if user is not None]


def _pending(step: str, since: datetime, people: list[tuple[int, str]], waiting: str) -> PendingAction:
    """``people``: (user id, username) of who may not take the step, in order."""
    unique = dict(people) if authservice_settings.FOUR_EYES else {}
    usernames = list(unique.values())
    by = f"an operator other than {_names(usernames)}" if usernames else "an operator"
    return PendingAction(step=step, since=since, excluded_user_ids=frozenset(unique),
                         excluded_usernames=tuple(usernames), sentence=f"{waiting} by {by}.")


def pending_action(participant: Participant) -> PendingAction | None:
    """The step waiting on ``participant``, or None if nothing waits."""
    if participant.offboarding_requested:
        requester = participant.offboarding_requested_by
        who = requester.get_username() if requester is not None else "the system"
        return _pending("offboarding confirmation", participant.offboarding_requested_at, _people([requester]),
                        f"Offboarding requested by {who} ({participant.offboarding_reason}): waiting for "
                        f"confirmation")
    makers = [(maker["id"], maker["username"]) for maker in participant.makers or []]
    recorder = _people([participant.recorded_by])
    if participant.status == Status.APPLIED:
        return _pending("review or approval", participant.status_changed_at, [*recorder, *makers],
                        "Waiting for review or approval")
    if participant.status == Status.UNDER_REVIEW:
        return _pending("approval", participant.status_changed_at,
                        [*recorder, *makers, *_people([participant.reviewed_by])], "Waiting for approval")
    return None


def pending_actions(limit: int | None = None) -> list[tuple[Participant, PendingAction]]:
    """The participants a step waits on (at most ``limit``), oldest first, in one query: the dashboard's queue."""
    waiting = (Participant.objects.filter(Q(status__in=[Status.APPLIED, Status.UNDER_REVIEW])
                                          | Q(offboarding_requested_at__isnull=False))
               .select_related("organisation", "recorded_by", "reviewed_by", "offboarding_requested_by")
               .order_by(Coalesce("offboarding_requested_at", "status_changed_at"), "pk"))
    if limit is not None:
        waiting = waiting[:limit]
    pairs = [(participant, pending_action(participant)) for participant in waiting]
    return sorted(pairs, key=lambda pair: pair[1].since)
