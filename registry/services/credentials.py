"""A participant's client credentials: the secret handed out once (``Credentials``), its
rotation, the revocation of every token the client holds, and the audit of a lockout
of failed client authentication."""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from authservice import not_before
from authservice.clients import client_revoke_tokens, client_rotate_secret
from registry.audit import record_event
from registry.invalidation import participant_changed
from registry.models import AuditAction, Participant
from registry.services.lifecycle import _locked, _require_client, _required_reason


@dataclass(frozen=True)
class Credentials:
    """A client secret on its one trip to the administrator. Never stored or logged."""

    participant: Participant
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"Credentials(client_id={self.client_id!r}, client_secret=***)"


@transaction.atomic
def participant_rotate_secret(*, participant: Participant, acting_user, grace_seconds: int = 0,
                              revoke_tokens: bool = False, force: bool = False) -> Credentials:
    """Issue a new client secret; with ``revoke_tokens`` every token issued before it
    is refused too (the old secret leaked).

    Of two rotations at the same moment (two administrators, a double submission)
    exactly one issues a secret; the other is refused, as is any rotation within a
    minute of the last or while its grace period runs, unless ``force`` (see
    ``authservice.clients.client_rotate_secret``)."""
    participant = _locked(participant)
    _require_client(participant, "secret to rotate")
    secret = client_rotate_secret(client=participant.client, grace_seconds=grace_seconds,
                                  revoke_tokens=revoke_tokens, force=force)
    if revoke_tokens:
        participant_changed(participant)  # the registry shows its tokens-not-before
    record_event(action=AuditAction.CLIENT_SECRET_ROTATED, acting_user=acting_user, participant=participant,
                 after={"client_id": participant.client.client_id, "grace_seconds": grace_seconds,
                        "revoke_tokens": revoke_tokens, "force": force})
    return Credentials(participant=participant, client_id=participant.client.client_id, client_secret=secret)


@transaction.atomic
def participant_revoke_tokens(*, participant: Participant, reason: str, acting_user) -> datetime:
    """End every token the participant's client holds: those issued before now are
    refused by the service at once and by providers once they revalidate its record.
    The client keeps working. Returns the new tokens-not-before."""
    reason = _required_reason(reason, "revoke a participant's tokens")
    participant = _locked(participant)
    _require_client(participant, "whose tokens can be revoked")
    previous = participant.client.tokens_not_before
    cutoff = client_revoke_tokens(client=participant.client)
    participant_changed(participant)
    record_event(action=AuditAction.TOKENS_REVOKED, acting_user=acting_user, participant=participant,
                 before={"tokens_not_before": not_before.as_text(previous)},
                 after={"tokens_not_before": not_before.as_text(cutoff), "reason": reason})
    return cutoff


@transaction.atomic
def client_auth_lockout_record(*, lockout) -> None:
    """Audit the start of a lockout of failed client authentication: the service's
    ``AUTHSERVICE["LOCKOUT_AUDITOR"]``, called once per lockout (an
    ``authservice.lockouts.Lockout``). The event names the participant when the
    presented client_id is one's; it records the client_id as presented either way."""
    participant = None
    if lockout.client_id:
        participant = (Participant.objects.select_related("organisation")
                       .filter(client__client_id=lockout.client_id).first())
    record_event(action=AuditAction.CLIENT_AUTH_LOCKOUT, acting_user=None, participant=participant,
                 after={"scope": lockout.kind, "client_id": lockout.client_id, "address": lockout.address,
                        "failures": lockout.failures, "window_seconds": lockout.window_seconds,
                        "locked_until": lockout.locked_until_iso, "endpoint": lockout.endpoint})
