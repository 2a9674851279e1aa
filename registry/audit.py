"""The tamper-evident audit log: append (inside the caller's transaction), verify, and
sign checkpoints of the chain.

Each event's hash is an HMAC-SHA256, under an audit key the database does not hold, of
its content and the previous event's hash: changing, removing or reordering a row
breaks the chain from that row on, and someone who can write the database but lacks
the key cannot recompute the links after a row they changed. Each event records the id
of the key that keyed it, so keys rotate: the first configured key keys new links,
every configured key verifies.

What a keyed chain cannot show is rows deleted from its end together with the chain
head fixed to match. A checkpoint (``checkpoint_sign``), kept off the database, names
the last event and its hash at one time, signed with the audit key; verifying the
chain against it proves that event is still there, unchanged, and so is everything
before it.

Routine verification is incremental: each successful verification stores a signed
checkpoint of the last event it found intact (``AuditVerification``), and the next
one checks that this event still carries that hash and verifies only the events
after it, so its cost grows with the new events, not with the log. It does not
re-read the events before the checkpoint: a full verification (``--full``) does,
and should run periodically too. A stored checkpoint whose signature does not verify
(altered, or signed with a key no longer configured) is ignored: the verification is
then full.
"""

import hashlib
import hmac
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from registry.models import AuditAction, AuditChainHead, AuditEvent, AuditVerification
from signing.conf import signing_settings
from signing.kek import KeyPurpose, derive

GENESIS_HASH = "0" * 64
CHECKPOINT_ALG = "HMAC-SHA256"
CHECKPOINT_MEMBERS = frozenset({"sequence", "hash", "issued_at", "signature"})
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


# --- Audit keys -----------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditKey:
    """An HMAC key of the audit log and its id.

    The id is a MAC under a key of its own, derived apart from the HMAC key, so it says
    nothing about the HMAC key. ``legacy_key_id`` (the first 8 hex digits of the key's
    SHA-256) is what links keyed before carry; it still finds their key.
    """

    key_id: str
    secret: bytes = field(repr=False)
    legacy_key_id: str = ""

    @classmethod
    def from_material(cls, material: str) -> "AuditKey":
        """Derive the key (``signing.kek.derive``, a purpose of its own) from a configured string."""
        secret = derive(KeyPurpose.AUDIT_LOG, material)
        id_key = derive(KeyPurpose.AUDIT_LOG_KEY_ID, material)
        return cls(key_id=hmac.new(id_key, b"audit-key-id", hashlib.sha256).hexdigest()[:8], secret=secret,
                   legacy_key_id=hashlib.sha256(secret).hexdigest()[:8])

    def named(self, key_id: str) -> bool:
        return key_id in (self.key_id, self.legacy_key_id)


@lru_cache(maxsize=4)
def _audit_keys(materials: tuple[str, ...]) -> tuple[AuditKey, ...]:
    return tuple(AuditKey.from_material(material) for material in materials)


def audit_keys() -> tuple[AuditKey, ...]:
    """The audit keys, the one that keys new links first.

    From ``AUTHSERVICE["AUDIT_KEYS"]``; unset, from the key-encryption keys (so their
    rotation rotates these too); those unset as well, from ``SECRET_KEY``, as
    ``signing.kek.key_encryption`` does. The same string gives the same
    key wherever it is configured: listing the key-encryption key after a new audit
    key keeps the links keyed before it verifying.
    """
    materials = (tuple(signing_settings.AUDIT_KEYS) or tuple(signing_settings.KEY_ENCRYPTION_KEYS)
                 or (settings.SECRET_KEY,))
    return _audit_keys(materials)


def _audit_key(key_id: str) -> AuditKey | None:
    return next((key for key in audit_keys() if key.named(key_id)), None)


def _canonical(content: Any) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# --- Links -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcessActor:
    """A person acting without a user account of the service, such as the operating-system
    user who runs a management command without ``--actor`` (label ``"os:alice"``). Passed
    as ``acting_user``; the event records the label and no user."""

    label: str


def actor_user(acting_user):
    """The user account behind ``acting_user``, or None (the system, a ``ProcessActor``)."""
    return None if isinstance(acting_user, ProcessActor) else acting_user


def actor_label_for(user) -> str:
    if user is None:
        return "system"
    if isinstance(user, ProcessActor):
        return user.label
    return getattr(user, "get_username", lambda: str(user))() or str(user.pk)


def canonical_event(event: AuditEvent) -> bytes:
    """The bytes a link covers: the event's content, its key id and the previous hash.

    The actor is its label, the username snapshot taken when the event was written, not
    the account row's id: an account renamed or deactivated later changes no link (and
    one that acted cannot be deleted: ``AuditEvent.actor`` is PROTECT)."""
    return _canonical({
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_label": event.actor_label,
        "action": event.action,
        "participant_id": event.participant_id,
        "organisation_id": event.organisation_id,
        "before": event.before,
        "after": event.after,
        "prev_hash": event.prev_hash,
        "key_id": event.key_id,
    })


def link_digest(event: AuditEvent, key: AuditKey) -> str:
    """The event's hash: HMAC-SHA256 under ``key`` (the ``audit-link:`` prefix keeps it
    apart from checkpoint signatures under the same key)."""
    return hmac.new(key.secret, b"audit-link:" + canonical_event(event), hashlib.sha256).hexdigest()


def record_event(*, action: str, acting_user, participant=None, organisation=None,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                 actor_label: str | None = None) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it records.

    Locks the chain head, so call it last: after the rows the change locks and the
    generations (``registry.invalidation``).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("Audit events are written inside the transaction of the change they record.")
    head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
    event = AuditEvent(
        sequence=head.sequence + 1,
        occurred_at=timezone.now(),
        actor=actor_user(acting_user),
        actor_label=actor_label or actor_label_for(acting_user),
        action=action,
        participant=participant,
        organisation=organisation or (participant.organisation if participant is not None else None),
        before=before or {},
        after=after or {},
        prev_hash=head.last_hash,
    )
    key = audit_keys()[0]
    event.key_id = key.key_id
    event.hash = link_digest(event, key)
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
class Checkpoint:
    """The last event of the chain at one time, as a verified checkpoint names it."""

    sequence: int
    hash: str
    issued_at: str


@dataclass(frozen=True)
class ChainReport:
    # Events verified before the first break (all of them when none is broken).
    checked: int
    broken_at: int | None = None
    reason: str = ""
    last_hash: str = GENESIS_HASH
    # How many verified links each audit key keyed, by key id: a key no link uses may go.
    links_by_key: dict[str, int] = field(default_factory=dict)
    # Incremental verification: the verified checkpoint it started from (links up to it
    # were not re-read this time); None for a full verification.
    since: "Checkpoint | None" = None
    # Every broken event, in order, with why: (sequence, reason). The first is broken_at.
    breaks: tuple[tuple[int, str], ...] = ()

    @property
    def recomputed(self) -> int:
        """Links recomputed by this verification."""
        return self.checked - (self.since.sequence if self.since else 0)

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def _link_faults(event: AuditEvent, expected_sequence: int, expected_prev: str,
                 checkpoint: Checkpoint | None) -> list[str]:
    """Why this link does not hold (empty when it does). Its content is checked even
    after a gap, so a row changed next to a deleted one is reported too."""
    faults = []
    if event.sequence != expected_sequence:
        faults.append(f"event #{expected_sequence} is missing (found #{event.sequence} next)")
    elif event.prev_hash != expected_prev:
        faults.append("prev_hash does not match the previous event's hash")
    key = _audit_key(event.key_id) if event.key_id else None
    if not event.key_id:
        faults.append("the link is unkeyed (no audit key id); every link is keyed since registry migration 0003")
    elif key is None:
        faults.append(f"it is keyed with audit key {event.key_id}, which is not configured (AUTHSERVICE_AUDIT_KEY)")
    elif not _same(link_digest(event, key), event.hash):
        faults.append("content does not match its hash (row was altered)")
    if checkpoint is not None and event.sequence == checkpoint.sequence and not _same(event.hash, checkpoint.hash):
        faults.append(f"its hash differs from the checkpoint's (issued {checkpoint.issued_at}): "
                      f"the chain was rewritten up to it")
    return faults


def verify_chain(checkpoint: Checkpoint | None = None, *, since: Checkpoint | None = None) -> ChainReport:
    """Recompute every link in order; report every broken one, the first as ``broken_at``.

    With a ``checkpoint`` (from ``checkpoint_verify``), the chain must also still hold
    the checkpoint's event with the checkpoint's hash. With ``since`` (a verified
    checkpoint of an earlier verification), only the links after its event are
    recomputed, once that event is found still carrying its hash; when it is not, that
    is a break and every link is recomputed.
    """
    # The head is read first, so events appended while the chain is read are no "deletion".
    head = AuditChainHead.objects.filter(pk=1).first()
    expected_prev = GENESIS_HASH
    last_sequence = verified = 0
    links_by_key: Counter[str] = Counter()
    breaks: list[tuple[int, str]] = []

    events = AuditEvent.objects.order_by("sequence")
    if since is not None:
        anchor = AuditEvent.objects.filter(sequence=since.sequence).values_list("hash", flat=True).first()
        if anchor is None:
            breaks.append((since.sequence, f"the event of the last verified checkpoint (verified {since.issued_at}) "
                                           f"is missing"))
        elif not _same(anchor, since.hash):
            breaks.append((since.sequence, f"its hash differs from the last verified checkpoint's (verified "
                                           f"{since.issued_at}): the chain was rewritten up to it"))
        else:
            expected_prev, last_sequence, verified = since.hash, since.sequence, since.sequence
            events = events.filter(sequence__gt=since.sequence)
    for event in events.iterator(chunk_size=2000):
        faults = _link_faults(event, last_sequence + 1, expected_prev, checkpoint)
        if faults:
            breaks.append((event.sequence, "; ".join(faults)))
        elif not breaks:
            verified = event.sequence
            links_by_key[event.key_id] += 1
        expected_prev, last_sequence = event.hash, max(last_sequence, event.sequence)
    if head is not None and head.sequence > last_sequence:
        breaks.append((last_sequence + 1, f"the chain head records {head.sequence} events; "
                                          f"{last_sequence} remain (events were deleted from the end)"))
    if checkpoint is not None and checkpoint.sequence > last_sequence:
        breaks.append((last_sequence + 1, f"the checkpoint issued {checkpoint.issued_at} records event "
                                          f"#{checkpoint.sequence}; the chain ends at #{last_sequence} "
                                          f"(events were deleted from the end)"))
    if breaks:
        first_at, first_reason = breaks[0]
        return ChainReport(verified, first_at, first_reason, expected_prev, dict(links_by_key), since, tuple(breaks))
    return ChainReport(verified, last_hash=expected_prev, links_by_key=dict(links_by_key), since=since)


# --- Checkpoints ----------------------------------------------------------------------------------

class CheckpointInvalid(Exception):
    """A checkpoint document that is malformed or whose signature does not verify."""


def _checkpoint_mac(key: AuditKey, checkpoint: Checkpoint, key_id: str | None = None) -> str:
    """``key_id``: the id the checkpoint names (a legacy id for one signed before ids were MACs)."""
    content = _canonical([key_id or key.key_id, checkpoint.sequence, checkpoint.hash, checkpoint.issued_at])
    return hmac.new(key.secret, b"audit-checkpoint:" + content, hashlib.sha256).hexdigest()


def checkpoint_sign(report: ChainReport) -> dict[str, Any]:
    """A checkpoint of the last event of a verified, non-empty chain, signed (HMAC-SHA256)
    with the audit key that keys new links."""
    if not report.ok or not report.checked:
        raise ValueError("only the last event of an intact, non-empty chain is checkpointed")
    issued_at = timezone.now().replace(microsecond=0).isoformat().replace("+00:00", "Z")
    checkpoint = Checkpoint(sequence=report.checked, hash=report.last_hash, issued_at=issued_at)
    key = audit_keys()[0]
    return {"sequence": checkpoint.sequence, "hash": checkpoint.hash, "issued_at": checkpoint.issued_at,
            "signature": {"alg": CHECKPOINT_ALG, "key_id": key.key_id, "value": _checkpoint_mac(key, checkpoint)}}


def _is_time(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def checkpoint_verify(document: Any) -> Checkpoint:
    """Check a checkpoint document's form and signature; raise ``CheckpointInvalid``."""
    if not isinstance(document, dict):
        raise CheckpointInvalid("it is not a JSON object")
    unexpected = sorted(set(document) - CHECKPOINT_MEMBERS)
    if unexpected:
        raise CheckpointInvalid(f"unexpected member {unexpected[0]!r}")
    sequence, digest, issued_at = document.get("sequence"), document.get("hash"), document.get("issued_at")
    if type(sequence) is not int or sequence < 1:
        raise CheckpointInvalid("sequence must be a positive integer")
    if not isinstance(digest, str) or not _HEX_DIGEST.fullmatch(digest):
        raise CheckpointInvalid("hash must be 64 lowercase hex digits")
    if not isinstance(issued_at, str) or not _is_time(issued_at):
        raise CheckpointInvalid("issued_at must be an ISO 8601 time")
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("alg") != CHECKPOINT_ALG:
        raise CheckpointInvalid(f"signature must be an object with alg {CHECKPOINT_ALG}")
    key_id, value = signature.get("key_id"), signature.get("value")
    if not isinstance(key_id, str) or not isinstance(value, str):
        raise CheckpointInvalid("signature must carry a key_id and a value")
    key = _audit_key(key_id)
    if key is None:
        raise CheckpointInvalid(f"it is signed with audit key {key_id!r}, which is not configured "
                                f"(AUTHSERVICE_AUDIT_KEY)")
    checkpoint = Checkpoint(sequence=sequence, hash=digest, issued_at=issued_at)
    if not _same(value, _checkpoint_mac(key, checkpoint, key_id)):
        raise CheckpointInvalid("its signature does not match its content (the checkpoint was altered)")
    return checkpoint


# --- The last verified checkpoint (incremental verification) ------------------------------------

def last_verified() -> Checkpoint | None:
    """The checkpoint the last successful verification stored, if its signature holds."""
    stored = AuditVerification.objects.filter(pk=1).values_list("checkpoint", flat=True).first()
    if stored is None:
        return None
    try:
        return checkpoint_verify(stored)
    except CheckpointInvalid:
        return None


def record_verified(report: ChainReport) -> None:
    """Store a signed checkpoint of the last event an intact verification reached."""
    if not report.ok or not report.checked:
        return
    AuditVerification.objects.update_or_create(pk=1, defaults={"checkpoint": checkpoint_sign(report),
                                                               "verified_at": timezone.now()})
