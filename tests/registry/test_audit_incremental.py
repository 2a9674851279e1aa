"""verify_audit_log is incremental by default: from the last verified checkpoint it
verifies only the new events; --full and --checkpoint verify every link."""

import io
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from registry import audit, services
from registry.models import AuditChainHead, AuditEvent, AuditVerification


def _call(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _write_events(count: int, admin_user, prefix: str = "Org") -> None:
    for number in range(count):
        services.organisation_create(legal_name=f"{prefix} {number}", acting_user=admin_user)


@pytest.fixture
def links_recomputed():
    with mock.patch("registry.audit.link_digest", wraps=audit.link_digest) as spy:
        yield spy


def test_the_first_verification_is_full_and_stores_a_signed_checkpoint(admin_user, links_recomputed):
    _write_events(4, admin_user)
    links_recomputed.reset_mock()  # writing computed their links
    assert "Audit log intact: 4 events verified." in _call("verify_audit_log")
    assert links_recomputed.call_count == 4
    stored = audit.last_verified()
    assert stored.sequence == 4 and stored.hash == AuditEvent.objects.get(sequence=4).hash


def test_a_routine_verification_recomputes_only_the_new_events(admin_user, links_recomputed):
    _write_events(5, admin_user)
    _call("verify_audit_log")
    _write_events(2, admin_user, prefix="New")
    links_recomputed.reset_mock()
    out = _call("verify_audit_log")
    assert "intact: 7 events; 2 verified after event #5" in out and "--full" in out
    assert links_recomputed.call_count == 2
    assert audit.last_verified().sequence == 7
    links_recomputed.reset_mock()
    assert "intact: 7 events; 0 verified after event #7" in _call("verify_audit_log")
    assert links_recomputed.call_count == 0


def test_full_recomputes_every_link(admin_user, links_recomputed):
    _write_events(3, admin_user)
    _call("verify_audit_log")
    links_recomputed.reset_mock()
    assert "Audit log intact: 3 events verified." in _call("verify_audit_log", "--full")
    assert links_recomputed.call_count == 3


def test_a_tampered_new_event_is_detected_by_the_routine_verification(admin_user):
    _write_events(3, admin_user)
    _call("verify_audit_log")
    _write_events(2, admin_user, prefix="New")
    AuditEvent.objects.filter(sequence=5).update(actor_label="mallory")
    with pytest.raises(CommandError, match="broken at event #5: content does not match"):
        _call("verify_audit_log")
    assert audit.last_verified().sequence == 3  # a failed verification stores nothing


def test_a_rewritten_checkpointed_event_is_detected_by_the_routine_verification(admin_user):
    _write_events(3, admin_user)
    _call("verify_audit_log")
    AuditEvent.objects.filter(sequence=3).update(hash="f" * 64)
    with pytest.raises(CommandError, match="broken at event #3: its hash differs from the last verified"):
        _call("verify_audit_log")


def test_truncation_below_the_last_verified_event_is_detected(admin_user):
    _write_events(4, admin_user)
    _call("verify_audit_log")
    AuditEvent.objects.filter(sequence__gte=3).delete()
    AuditChainHead.objects.filter(pk=1).update(sequence=2, last_hash=AuditEvent.objects.get(sequence=2).hash)
    with pytest.raises(CommandError, match="broken at event #4: the event of the last verified checkpoint"):
        _call("verify_audit_log")


def test_an_old_tampered_event_needs_full(admin_user):
    _write_events(4, admin_user)
    _call("verify_audit_log")
    AuditEvent.objects.filter(sequence=2).update(actor_label="mallory")
    assert "intact: 4 events; 0 verified" in _call("verify_audit_log")  # before the checkpoint: not re-read
    with pytest.raises(CommandError, match="broken at event #2"):
        _call("verify_audit_log", "--full")


@pytest.mark.parametrize("forgery", [
    lambda document: {**document, "sequence": 2},  # moved back without the key: its signature no longer holds
    lambda document: {**document, "signature": {**document["signature"], "value": "0" * 64}},
    lambda document: {"sequence": "not a checkpoint"},
])
def test_a_stored_checkpoint_that_does_not_verify_is_ignored(admin_user, links_recomputed, forgery):
    _write_events(4, admin_user)
    _call("verify_audit_log")
    row = AuditVerification.objects.get()
    AuditVerification.objects.filter(pk=row.pk).update(checkpoint=forgery(row.checkpoint))
    links_recomputed.reset_mock()
    assert "Audit log intact: 4 events verified." in _call("verify_audit_log")  # full, as with none
    assert links_recomputed.call_count == 4


def test_the_checkpoint_flag_still_verifies_the_whole_chain(admin_user, tmp_path, links_recomputed):
    _write_events(3, admin_user)
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(_call("audit_checkpoint"))
    links_recomputed.reset_mock()
    out = _call("verify_audit_log", "--checkpoint", str(checkpoint))
    assert "Audit log intact: 3 events verified." in out and "Checkpoint holds: event #3" in out
    assert links_recomputed.call_count == 3


def test_an_empty_log_verifies_and_stores_nothing(db):
    assert "Audit log intact: 0 events verified." in _call("verify_audit_log")
    assert not AuditVerification.objects.exists()
