"""The audit log against someone who can write the database: keyed links, key
rotation, the re-keying of legacy links, and signed checkpoints of the chain head."""

import base64
import hashlib
import hmac
import importlib
import json
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command

from authservice import signing_keys
from registry import audit, services
from registry.models import AuditChainHead, AuditEvent, AuditVerification

rekey_migration = importlib.import_module("registry.migrations.0003_auditevent_key_id")


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _write_events(count: int, prefix: str = "Org") -> None:
    start = AuditEvent.objects.count()
    for n in range(count):
        services.organisation_create(legal_name=f"{prefix} {start + n}", acting_user=None)


@pytest.fixture
def five_events(db):
    _write_events(5)


@pytest.fixture
def audit_keys(settings):
    """Set AUTHSERVICE["AUDIT_KEYS"] (the first keys new links)."""

    def configure(*keys: str) -> None:
        settings.AUTHSERVICE = {**settings.AUTHSERVICE, "AUDIT_KEYS": list(keys)}

    return configure


def _unkeyed_digest(event: AuditEvent) -> str:
    """What the attacker computes without the key: the plain SHA-256 links of before."""
    return rekey_migration.legacy_digest(event)


def _wrong_key_digest(event: AuditEvent) -> str:
    return audit.link_digest(event, audit.AuditKey.from_material("mallory's guess at the audit key"))


def _real_key_digest(event: AuditEvent) -> str:
    return audit.link_digest(event, audit.audit_keys()[0])


def _rechain_from(sequence: int, digest, *, key_id: str | None = None) -> None:
    """Recompute every link from ``sequence`` on, then fix the chain head: the attack."""
    previous = AuditEvent.objects.filter(sequence=sequence - 1).values_list("hash", flat=True).first()
    previous = previous or audit.GENESIS_HASH
    for event in AuditEvent.objects.filter(sequence__gte=sequence).order_by("sequence"):
        event.prev_hash = previous
        if key_id is not None:
            event.key_id = key_id
        event.hash = digest(event)
        AuditEvent.objects.filter(pk=event.pk).update(prev_hash=event.prev_hash, key_id=event.key_id,
                                                      hash=event.hash)
        previous = event.hash
    AuditChainHead.objects.filter(pk=1).update(last_hash=previous)


# --- The attack: rewrite a row, re-hash the rest -------------------------------------------

@pytest.mark.parametrize(("digest", "key_id"), [
    pytest.param(_unkeyed_digest, "", id="unkeyed-links"),
    pytest.param(_unkeyed_digest, None, id="unkeyed-digest-keeping-the-key-id"),
    pytest.param(_wrong_key_digest, None, id="wrong-key"),
])
def test_rewriting_a_row_and_rehashing_the_rest_without_the_key_is_detected(five_events, digest, key_id):
    AuditEvent.objects.filter(sequence=3).update(actor_label="mallory")
    _rechain_from(3, digest, key_id=key_id)
    with pytest.raises(CommandError, match="broken at event #3"):
        _call("verify_audit_log")


def test_unkeyed_links_are_refused_even_for_the_whole_chain(five_events):
    AuditEvent.objects.filter(sequence=1).update(actor_label="mallory")
    _rechain_from(1, _unkeyed_digest, key_id="")
    with pytest.raises(CommandError, match=r"broken at event #1: the link is unkeyed"):
        _call("verify_audit_log")


def test_tail_truncation_with_the_head_fixed_is_detected_with_a_checkpoint(five_events, tmp_path):
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(_call("audit_checkpoint"))
    AuditEvent.objects.filter(sequence__gte=4).delete()
    last = AuditEvent.objects.get(sequence=3)
    AuditChainHead.objects.filter(pk=1).update(sequence=3, last_hash=last.hash)
    AuditVerification.objects.all().delete()  # the last verified checkpoint, which would tell
    # Without a checkpoint nothing in the database says there were more events.
    assert "intact: 3 events" in _call("verify_audit_log")
    with pytest.raises(CommandError, match=r"broken at event #4: .*records event #5; the chain ends at #3"):
        _call("verify_audit_log", "--checkpoint", str(checkpoint))


def test_rewriting_before_a_checkpoint_is_detected_even_with_the_key(five_events, tmp_path):
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(_call("audit_checkpoint"))
    AuditEvent.objects.filter(sequence=2).update(actor_label="mallory")
    _rechain_from(2, _real_key_digest)
    assert "intact: 5 events" in _call("verify_audit_log", "--full")  # every link holds: the key rechained them
    with pytest.raises(CommandError, match="broken at event #5: its hash differs from the checkpoint"):
        _call("verify_audit_log", "--checkpoint", str(checkpoint))


# --- Checkpoints ------------------------------------------------------------------------------

def test_checkpoint_is_one_signed_json_document_of_the_last_event(five_events):
    document = json.loads(_call("audit_checkpoint"))
    last = AuditEvent.objects.get(sequence=5)
    assert set(document) == {"sequence", "hash", "issued_at", "signature"}
    assert (document["sequence"], document["hash"]) == (5, last.hash)
    assert document["signature"]["alg"] == "HMAC-SHA256"
    assert document["signature"]["key_id"] == audit.audit_keys()[0].key_id == last.key_id


def test_a_checkpoint_still_verifies_after_more_events_are_appended(five_events, tmp_path):
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(_call("audit_checkpoint"))
    _write_events(3, prefix="Later")
    out = _call("verify_audit_log", "--checkpoint", str(checkpoint))
    assert "Audit log intact: 8 events verified." in out
    assert "Checkpoint holds: event #5" in out


def test_checkpoint_refuses_a_broken_chain(five_events):
    AuditEvent.objects.filter(sequence=2).update(actor_label="mallory")
    with pytest.raises(CommandError, match=r"broken at event #2.*no checkpoint issued"):
        _call("audit_checkpoint")


def test_checkpoint_refuses_an_empty_log(db):
    with pytest.raises(CommandError, match="empty"):
        _call("audit_checkpoint")


@pytest.mark.parametrize(("content", "message"), [
    pytest.param(None, "Cannot read checkpoint", id="missing-file"),
    pytest.param(b"\x80\x81 not text", "not a JSON document", id="not-utf8"),
    pytest.param(b"{not json", "not a JSON document", id="not-json"),
    pytest.param(b"[" * 3000, "not a JSON document", id="too-deep"),
    pytest.param(b" " * 5000, "too large", id="too-large"),
    pytest.param(b"[]", "not a JSON object", id="array"),
])
def test_unreadable_checkpoint_files_are_refused(five_events, tmp_path, content, message):
    path = tmp_path / "checkpoint.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        _call("verify_audit_log", "--checkpoint", str(path))


def _set(name, value):
    return lambda document: document.update({name: value})


def _drop(name):
    return lambda document: document.pop(name)


def _sign(name, value):
    return lambda document: document["signature"].update({name: value})


@pytest.mark.parametrize(("change", "message"), [
    pytest.param(_drop("sequence"), "sequence must be a positive integer", id="no-sequence"),
    pytest.param(_set("sequence", True), "sequence must be a positive integer", id="boolean-sequence"),
    pytest.param(_set("sequence", "5"), "sequence must be a positive integer", id="string-sequence"),
    pytest.param(_set("sequence", 0), "sequence must be a positive integer", id="zero-sequence"),
    pytest.param(_set("sequence", 4), "signature does not match", id="tampered-sequence"),
    pytest.param(_set("hash", "a" * 64), "signature does not match", id="tampered-hash"),
    pytest.param(_set("hash", "xyz"), "hash must be 64 lowercase hex digits", id="bad-hash"),
    pytest.param(_set("issued_at", "yesterday"), "issued_at must be an ISO 8601 time", id="bad-time"),
    pytest.param(_set("issued_at", "2020-01-01T00:00:00Z"), "signature does not match", id="tampered-time"),
    pytest.param(_set("extra", 1), "unexpected member", id="extra-member"),
    pytest.param(_set("signature", "abc"), "alg HMAC-SHA256", id="signature-not-an-object"),
    pytest.param(_sign("alg", "HS256"), "alg HMAC-SHA256", id="other-alg"),
    pytest.param(_sign("key_id", "00000000"), "audit key '00000000', which is not configured", id="unknown-key"),
    pytest.param(_sign("value", "0" * 64), "signature does not match", id="wrong-signature"),
    pytest.param(_sign("value", "\u00e9"), "signature does not match", id="non-ascii-signature"),
])
def test_tampered_checkpoints_are_refused(five_events, tmp_path, change, message):
    document = json.loads(_call("audit_checkpoint"))
    change(document)
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CommandError, match=message):
        _call("verify_audit_log", "--checkpoint", str(path))


def test_a_checkpoint_signed_with_another_key_is_refused(five_events, tmp_path, audit_keys):
    report = audit.verify_chain()
    audit_keys("an audit key this deployment does not have")
    document = audit.checkpoint_sign(report)
    audit_keys()
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CommandError, match="which is not configured"):
        _call("verify_audit_log", "--checkpoint", str(path))


# --- Keys and their rotation -------------------------------------------------------------------

def test_key_rotation_keeps_old_links_and_old_checkpoints_verifying(db, tmp_path, audit_keys):
    audit_keys("the first audit key")
    _write_events(2)
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(_call("audit_checkpoint"))
    audit_keys("the second audit key", "the first audit key")
    _write_events(2, prefix="After rotation")
    old, new = (audit.AuditKey.from_material(m).key_id for m in ("the first audit key", "the second audit key"))
    assert list(AuditEvent.objects.order_by("sequence").values_list("key_id", flat=True)) == [old, old, new, new]
    out = _call("verify_audit_log", "--checkpoint", str(checkpoint))
    assert "intact: 4 events" in out
    assert f"{new} (2)" in out and f"{old} (2)" in out

    audit_keys("the second audit key")
    # Whether a key may go is a question about every link: --full answers it.
    with pytest.raises(CommandError, match=f"broken at event #1: it is keyed with audit key {old}, which is not"):
        _call("verify_audit_log", "--full")


def test_unset_audit_key_is_derived_from_the_key_encryption_key(settings, audit_keys):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": ["kek-new", "kek-old"]}
    audit_keys()
    derived = audit.audit_keys()
    assert [key.key_id for key in derived] == [audit.AuditKey.from_material(m).key_id for m in ("kek-new", "kek-old")]
    # HKDF with an info of its own: not the key that encrypts the service's private keys.
    assert derived[0].secret != base64.urlsafe_b64decode(signing_keys._fernet_key("kek-new"))
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": []}
    assert [key.key_id for key in audit.audit_keys()] == [audit.AuditKey.from_material(settings.SECRET_KEY).key_id]


def test_moving_from_the_derived_key_to_a_dedicated_one(db, settings, audit_keys):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": ["the key-encryption key"]}
    _write_events(2)
    audit_keys("a dedicated audit key", "the key-encryption key")
    _write_events(1, prefix="Dedicated")
    assert "intact: 3 events" in _call("verify_audit_log")


def test_audit_keys_must_be_a_list_of_strings(settings):
    from django.core.exceptions import ImproperlyConfigured

    from authservice.conf import authservice_settings

    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "AUDIT_KEYS": "one,two"}
    with pytest.raises(ImproperlyConfigured, match="AUDIT_KEYS"):
        authservice_settings.AUDIT_KEYS  # noqa: B018


def test_a_link_is_an_hmac_of_the_event(five_events):
    event = AuditEvent.objects.get(sequence=3)
    key = audit.audit_keys()[0]
    # The id is a MAC under a key of its own, not a hash of the audit key.
    assert event.key_id == key.key_id != hashlib.sha256(key.secret).hexdigest()[:8]
    expected = hmac.new(key.secret, b"audit-link:" + audit.canonical_event(event), hashlib.sha256).hexdigest()
    assert event.hash == expected


# --- Legacy links (plain SHA-256, written before keyed links) -----------------------------------

def _legacy_chain(count: int) -> None:
    """Events as the service wrote them before links were keyed."""
    _write_events(count, prefix="Legacy")
    _rechain_from(1, _unkeyed_digest, key_id="")


def _rekey() -> None:
    rekey_migration.rekey_legacy_links(apps, None)


def test_the_migration_rekeys_an_intact_legacy_chain(db):
    _legacy_chain(4)
    with pytest.raises(CommandError, match="unkeyed"):
        _call("verify_audit_log")
    _rekey()
    assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {audit.audit_keys()[0].key_id}
    assert "intact: 4 events" in _call("verify_audit_log")
    _write_events(1, prefix="After")
    assert "intact: 5 events" in _call("verify_audit_log")


def test_the_migration_leaves_a_broken_legacy_chain_broken_where_it_was(db):
    _legacy_chain(4)
    AuditEvent.objects.filter(sequence=3).update(actor_label="mallory")
    _rekey()
    assert list(AuditEvent.objects.order_by("sequence").values_list("key_id", flat=True))[2:] == ["", ""]
    with pytest.raises(CommandError, match="broken at event #3"):
        _call("verify_audit_log")


def test_the_migration_reverses_to_legacy_links(db):
    _write_events(3)
    rekey_migration.unkey_links(apps, None)
    assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {""}
    assert all(_unkeyed_digest(event) == event.hash for event in AuditEvent.objects.all())
    _rekey()
    assert "intact: 3 events" in _call("verify_audit_log")
