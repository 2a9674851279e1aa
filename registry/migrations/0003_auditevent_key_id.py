"""Key the audit log's links with the audit key, and record which key keyed each.

Links written before this migration are plain SHA-256, which anyone who can write the
database can recompute. Rather than trusting such links forever (a writer could then
rewrite the whole chain as "legacy"), this migration re-keys the legacy chain in
place, from the first event, with the audit key configured when it runs; afterwards
every link is keyed and ``verify_audit_log`` refuses an unkeyed one. Only the intact
part is re-keyed: at a broken link it stops, so the break (and every row after it)
stays as it was and is still reported at the same event. Run it with the production
audit key (AUTHSERVICE_AUDIT_KEY, or the key-encryption key it is derived from) and
with no old process still appending events.

Reversing turns the intact keyed chain back into plain SHA-256 links.
"""

import hashlib
import json

from django.db import migrations, models

GENESIS_HASH = "0" * 64
BATCH = 1000


def legacy_digest(event) -> str:
    """The link as written before this migration: SHA-256, no key (frozen here)."""
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


def _in_order(AuditEvent):
    """Every event by sequence, read in batches so rows can be rewritten meanwhile."""
    sequence = 0
    while batch := list(AuditEvent.objects.filter(sequence__gt=sequence).order_by("sequence")[:BATCH]):
        yield from batch
        sequence = batch[-1].sequence


def _rechain(apps, *, holds, digest, key_id: str) -> None:
    """Rewrite the chain's links from the first event for as long as each still ``holds``."""
    AuditEvent = apps.get_model("registry", "AuditEvent")
    AuditChainHead = apps.get_model("registry", "AuditChainHead")
    old_prev = new_prev = GENESIS_HASH
    sequence = 0
    for event in _in_order(AuditEvent):
        if event.sequence != sequence + 1 or event.prev_hash != old_prev or not holds(event):
            break
        old_prev = event.hash
        event.prev_hash, event.key_id = new_prev, key_id
        event.hash = digest(event)
        event.save(update_fields=["prev_hash", "key_id", "hash"])
        new_prev, sequence = event.hash, event.sequence
    AuditChainHead.objects.filter(pk=1, sequence=sequence, last_hash=old_prev).update(last_hash=new_prev)


def rekey_legacy_links(apps, schema_editor) -> None:
    from registry.audit import audit_keys, link_digest

    key = audit_keys()[0]
    _rechain(apps, holds=lambda event: not event.key_id and legacy_digest(event) == event.hash,
             digest=lambda event: link_digest(event, key), key_id=key.key_id)


def unkey_links(apps, schema_editor) -> None:
    from registry.audit import audit_keys, link_digest

    keys = {key_id: key for key in audit_keys() for key_id in (key.key_id, key.legacy_key_id)}

    def holds(event) -> bool:
        key = keys.get(event.key_id)
        return key is not None and link_digest(event, key) == event.hash

    _rechain(apps, holds=holds, digest=legacy_digest, key_id="")


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0002_audit_action_tokens_revoked'),
    ]

    operations = [
        migrations.AddField(
            model_name='auditevent',
            name='key_id',
            field=models.CharField(default='', editable=False, max_length=8),
        ),
        migrations.RunPython(rekey_legacy_links, unkey_links),
    ]
