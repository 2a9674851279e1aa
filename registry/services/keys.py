"""A participant's public keys: validated on entry, added, and revoked (never the last
active key of an approved participant)."""

import json

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from registry.audit import record_event
from registry.invalidation import participant_changed
from registry.key_material import parse_public_key
from registry.models import AuditAction, KeyStatus, Participant, PublicKey, Status
from registry.services.lifecycle import _add_maker, _locked, _require_live, _save


def _active_keys(participant: Participant):
    now = timezone.now()
    return participant.keys.filter(status=KeyStatus.ACTIVE).exclude(not_after__lt=now)


def _make_key(participant: Participant, material: str, kid: str | None) -> PublicKey:
    parsed = parse_public_key(material, kid=kid)
    if PublicKey.objects.filter(thumbprint=parsed.thumbprint, status=KeyStatus.ACTIVE).exists():
        raise ValidationError("This key is already registered.")
    if participant.pk and participant.keys.filter(kid=parsed.kid, status=KeyStatus.ACTIVE).exists():
        raise ValidationError(f"This participant already has an active key with kid {parsed.kid!r}.")
    return PublicKey(
        participant=participant, kid=parsed.kid, thumbprint=parsed.thumbprint, alg=parsed.alg,
        kty=parsed.kty, source_format=parsed.source_format, public_jwk=parsed.public_jwk,
        certificate_pem=parsed.certificate_pem, not_before=parsed.not_before, not_after=parsed.not_after,
    )


def _jwk_text(key: PublicKey) -> str:
    public = {k: v for k, v in key.public_jwk.items() if k != "x5c"}
    return json.dumps(public)


@transaction.atomic
def public_key_add(*, participant: Participant, key_material: str, kid: str | None = None,
                   acting_user) -> PublicKey:
    participant = _locked(participant)
    _require_live(participant)
    key = _make_key(participant, key_material, kid)
    _save(key)
    _add_maker(participant, acting_user)
    participant_changed(participant)
    record_event(action=AuditAction.KEY_ADDED, acting_user=acting_user, participant=participant,
                 after={"kid": key.kid, "thumbprint": key.thumbprint, "alg": key.alg,
                        "not_after": key.not_after.isoformat() if key.not_after else None})
    return key


@transaction.atomic
def public_key_revoke(*, key: PublicKey, acting_user) -> PublicKey:
    participant = _locked(key.participant)
    key = PublicKey.objects.select_for_update().get(pk=key.pk)
    if key.status != KeyStatus.ACTIVE:
        raise ValidationError("This key is already revoked.")
    if participant.status in (Status.APPROVED, Status.SUSPENDED) and not _active_keys(participant).exclude(
            pk=key.pk).exists():
        raise ValidationError("An approved participant must keep at least one active key; add the new key "
                              "before revoking the last one.")
    key.status, key.revoked_at = KeyStatus.REVOKED, timezone.now()
    key.save(update_fields=["status", "revoked_at"])
    _add_maker(participant, acting_user)
    participant_changed(participant)
    record_event(action=AuditAction.KEY_REVOKED, acting_user=acting_user, participant=participant,
                 before={"kid": key.kid, "status": KeyStatus.ACTIVE}, after={"kid": key.kid, "status": key.status})
    return key
