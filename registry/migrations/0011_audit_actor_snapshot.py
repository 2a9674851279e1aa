"""The audit chain survives its operators.

- A link covers the actor's label (the username snapshot taken when the event was
  written), no longer the account row's id, which deleting an operator set to NULL and
  so "altered" honest events. This migration re-links the chain under the new content
  with the audit key configured when it runs (the first of AUTHSERVICE["AUDIT_KEYS"],
  else the one derived from the key-encryption key). Only links that hold under the
  old content are re-linked; a row that does not (altered, or keyed with a key no
  longer configured) is left as it was, so ``verify_audit_log`` reports it where it
  was. An event whose actor was deleted before this release (its actor id now NULL)
  holds if some former account id makes its old link hold: that is what SET_NULL did,
  not a change to what it records.
- Accounts that acted are deactivated, no longer deleted (PROTECT).

Hashes change, so a checkpoint kept off the database before this migration no longer
matches: take a new one (``audit_checkpoint``) after it. The stored checkpoint of the
last verification is dropped, so the next verification is full. Run it with the
production audit key and with no old process still appending events.
"""

import hashlib
import hmac
import json

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

BATCH = 1000
# Former account ids tried for an event whose actor was deleted: beyond the highest id
# still present by this many.
DELETED_ACCOUNT_SEARCH = 10_000


def _old_digest(event, secret: bytes, actor_id) -> str:
    """The link as written before this migration (frozen here): the actor id included."""
    content = {
        "sequence": event.sequence, "occurred_at": event.occurred_at.isoformat(), "actor_id": actor_id,
        "actor_label": event.actor_label, "action": event.action, "participant_id": event.participant_id,
        "organisation_id": event.organisation_id, "before": event.before, "after": event.after,
        "prev_hash": event.prev_hash, "key_id": event.key_id,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hmac.new(secret, b"audit-link:" + canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def _by_id(keys) -> dict:
    """The configured audit keys by every id a stored link may carry: the current one, and
    the id links were keyed with before ids became MACs (``AuditKey.legacy_key_id``)."""
    found = {}
    for key in keys:
        found.setdefault(key.key_id, key)
        if getattr(key, "legacy_key_id", ""):
            found.setdefault(key.legacy_key_id, key)
    return found


def _in_order(AuditEvent):
    sequence = 0
    while batch := list(AuditEvent.objects.filter(sequence__gt=sequence).order_by("sequence")[:BATCH]):
        yield from batch
        sequence = batch[-1].sequence


def _relink(apps, *, holds, digest, key_id: str) -> None:
    """Re-link every event whose link ``holds``, from the first; a link that does not
    hold is left untouched (and the next one still names its hash)."""
    AuditEvent = apps.get_model("registry", "AuditEvent")
    AuditChainHead = apps.get_model("registry", "AuditChainHead")
    # The previous event's hash before and after: a link names the event just before it.
    previous_old = previous_new = None
    for event in _in_order(AuditEvent):
        old = event.hash
        if holds(event):
            if event.prev_hash == previous_old:
                event.prev_hash = previous_new
            event.key_id = key_id
            event.hash = digest(event)
            event.save(update_fields=["prev_hash", "key_id", "hash"])
        previous_old, previous_new = old, event.hash
    if previous_old is not None:
        AuditChainHead.objects.filter(pk=1, last_hash=previous_old).update(last_hash=previous_new)
    apps.get_model("registry", "AuditVerification").objects.all().delete()


def relink_without_actor_ids(apps, schema_editor) -> None:
    from registry.audit import audit_keys, link_digest

    keys = _by_id(audit_keys())
    User = apps.get_model(settings.AUTH_USER_MODEL)
    highest = User.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    present = set(User.objects.values_list("pk", flat=True))
    former = [pk for pk in range(1, highest + DELETED_ACCOUNT_SEARCH) if pk not in present]

    def holds(event) -> bool:
        key = keys.get(event.key_id)
        if key is None:
            return False
        if hmac.compare_digest(_old_digest(event, key.secret, event.actor_id), event.hash):
            return True
        if event.actor_id is not None or event.actor_label == "system" or event.actor_label.startswith("os:"):
            return False
        return any(hmac.compare_digest(_old_digest(event, key.secret, pk), event.hash) for pk in former)

    current = audit_keys()[0]
    _relink(apps, holds=holds, digest=lambda event: link_digest(event, current), key_id=current.key_id)


def relink_with_actor_ids(apps, schema_editor) -> None:
    from registry.audit import audit_keys, link_digest

    keys = _by_id(audit_keys())

    def holds(event) -> bool:
        key = keys.get(event.key_id)
        return key is not None and hmac.compare_digest(link_digest(event, key), event.hash)

    current = audit_keys()[0]
    _relink(apps, holds=holds, digest=lambda event: _old_digest(event, current.secret, event.actor_id),
            key_id=current.key_id)


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0010_client_generation_triggers'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='auditevent',
            name='actor',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(relink_without_actor_ids, relink_with_actor_ids),
    ]
