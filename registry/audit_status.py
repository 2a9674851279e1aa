"""What the admin shows of the audit chain's state, cheaply: the chain head (one row)
and the outcome of the last verification, which ``verify_audit_log`` and
``audit_checkpoint`` record in the shared cache (failures too); without that note
(another cache per process, or expired), the last successful verification's stored
checkpoint (``registry.audit.record_verified``). Pages never verify the chain
themselves: that reads every event.
"""

from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

from registry.audit import ChainReport
from registry.models import AuditChainHead, AuditVerification

CACHE_KEY = "registry:audit:last-verification"
# Kept for a while after the last run; a dashboard that finds none says "not verified recently".
KEEP_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    broken_at: int | None
    reason: str
    at: datetime
    checkpoint_sequence: int | None = None
    checkpoint_issued_at: str = ""


@dataclass(frozen=True)
class ChainState:
    head_sequence: int
    last_verification: Verification | None

    @property
    def unverified_events(self) -> int | None:
        """Events appended since the last verification covered the chain."""
        if self.last_verification is None or not self.last_verification.ok:
            return None
        return max(self.head_sequence - self.last_verification.checked, 0)


def record_verification(report: ChainReport, *, checkpoint_sequence: int | None = None,
                        checkpoint_issued_at: str = "") -> None:
    """Remember a full verification's outcome for the admin. A cache outage loses the
    note, never the verification: the command's own output is the record."""
    note = {"ok": report.ok, "checked": report.checked, "broken_at": report.broken_at, "reason": report.reason,
            "at": timezone.now().isoformat(), "checkpoint_sequence": checkpoint_sequence,
            "checkpoint_issued_at": checkpoint_issued_at}
    try:
        cache.set(CACHE_KEY, note, KEEP_SECONDS)
    except Exception:  # a cache outage must not fail a verification
        return


def last_verification() -> Verification | None:
    try:
        note = cache.get(CACHE_KEY)
    except Exception:  # the page then shows "unknown"
        note = None
    if not isinstance(note, dict):
        return _last_stored_verification()
    return Verification(ok=bool(note["ok"]), checked=int(note["checked"]), broken_at=note.get("broken_at"),
                        reason=note.get("reason", ""), at=datetime.fromisoformat(note["at"]),
                        checkpoint_sequence=note.get("checkpoint_sequence"),
                        checkpoint_issued_at=note.get("checkpoint_issued_at", ""))


def _last_stored_verification() -> Verification | None:
    stored = AuditVerification.objects.filter(pk=1).values_list("checkpoint", "verified_at").first()
    if stored is None:
        return None
    checkpoint, verified_at = stored
    return Verification(ok=True, checked=int(checkpoint.get("sequence", 0)), broken_at=None, reason="",
                        at=verified_at)


def chain_state() -> ChainState:
    """The chain head and the last verification: one query."""
    head = AuditChainHead.objects.filter(pk=1).values_list("sequence", flat=True).first()
    return ChainState(head_sequence=head or 0, last_verification=last_verification())
