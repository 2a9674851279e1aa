"""Who must act next on a participant, and who may not (``AUTHSERVICE["FOUR_EYES"]``):
for the participant page and the dashboard. The services enforce the rule; this only
describes it."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.db.models.functions import Coalesce

from authservice.conf import authservice_settings
from registry.models import Participant, Status


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


def _pending(step: str, since: datetime, users: list, waiting: str) -> PendingAction:
    users = [user for user in users if user is not None] if authservice_settings.FOUR_EYES else []
    unique = list({user.pk: user for user in users}.values())
    usernames = [user.get_username() for user in unique]
    by = f"an operator other than {_names(usernames)}" if usernames else "an operator"
    return PendingAction(step=step, since=since, excluded_user_ids=frozenset(user.pk for user in unique),
                         excluded_usernames=tuple(usernames), sentence=f"{waiting} by {by}.")


def pending_action(participant: Participant) -> PendingAction | None:
    """The step waiting on ``participant``, or None if nothing waits."""
    if participant.offboarding_requested:
        requester = participant.offboarding_requested_by
        who = requester.get_username() if requester is not None else "the system"
        return _pending("offboarding confirmation", participant.offboarding_requested_at, [requester],
                        f"Offboarding requested by {who} ({participant.offboarding_reason}): waiting for "
                        f"confirmation")
    if participant.status == Status.APPLIED:
        return _pending("review or approval", participant.status_changed_at, [participant.recorded_by],
                        "Waiting for review or approval")
    if participant.status == Status.UNDER_REVIEW:
        return _pending("approval", participant.status_changed_at,
                        [participant.recorded_by, participant.reviewed_by], "Waiting for approval")
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
