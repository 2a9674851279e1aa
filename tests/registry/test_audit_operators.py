"""The audit chain survives its operators: a link names its actor by the username
snapshot taken when it was written, operators are deactivated rather than deleted
(deleting one who acted is refused, in the admin and in the ORM), and
``verify_audit_log`` reports every broken event, not only the first."""

import importlib
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import ProtectedError
from django.test import Client
from django.urls import reverse

from registry import services
from registry.models import AuditEvent

PASSWORD = "x-Very-long-pass-1"


def _verify(*args) -> str:
    out = StringIO()
    call_command("verify_audit_log", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def operator(db):
    user = get_user_model().objects.create_user("olivia", password=PASSWORD, is_staff=True)
    for n in range(3):
        services.organisation_create(legal_name=f"Olivia's Org {n}", acting_user=user)
    return user


@pytest.fixture
def superuser(db):
    user = get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)
    http = Client()
    http.force_login(user)
    return http


def test_deleting_an_operator_who_has_audit_events_is_refused(operator):
    with pytest.raises(ProtectedError, match=r"AuditEvent\.actor"):
        operator.delete()
    assert get_user_model().objects.filter(pk=operator.pk).exists()
    assert _verify("--full").startswith("Audit log intact: 3 events verified.")


def test_the_admin_refuses_to_delete_an_operator_who_has_audit_events(operator, superuser):
    url = reverse("admin:auth_user_delete", args=[operator.pk])
    page = superuser.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "audit event" in text.lower() and "deactivate" in text.lower()
    superuser.post(url, {"post": "yes"})
    assert get_user_model().objects.filter(pk=operator.pk).exists()
    bulk = superuser.post(reverse("admin:auth_user_changelist"),
                          {"action": "delete_selected", "_selected_action": [operator.pk], "post": "yes"})
    assert bulk.status_code in (200, 302)
    assert get_user_model().objects.filter(pk=operator.pk).exists()


def test_a_user_who_never_acted_can_still_be_deleted(db):
    user = get_user_model().objects.create_user("nobody", password=PASSWORD)
    user.delete()
    assert not get_user_model().objects.filter(username="nobody").exists()


def test_an_honest_chain_verifies_after_its_operator_is_deactivated_or_renamed(operator):
    operator.is_active = False
    operator.save()
    assert _verify("--full").startswith("Audit log intact: 3 events verified.")
    operator.username = "olivia-left"
    operator.save()
    assert _verify("--full").startswith("Audit log intact: 3 events verified.")
    assert set(AuditEvent.objects.values_list("actor_label", flat=True)) == {"olivia"}


def test_the_link_names_the_actor_by_its_snapshot_not_the_account_row(operator):
    """What SET_NULL did to honest rows when an operator was deleted: no longer a break."""
    AuditEvent.objects.filter(sequence=2).update(actor=None)
    assert _verify("--full").startswith("Audit log intact: 3 events verified.")
    AuditEvent.objects.filter(sequence=2).update(actor_label="mallory")  # the snapshot is what is hashed
    with pytest.raises(CommandError, match="broken at event #2"):
        _verify("--full")


@pytest.mark.parametrize("full", [True, False], ids=["full", "incremental"])
def test_every_tampered_event_is_reported_not_only_the_first(operator, full):
    for n in range(3):
        services.organisation_create(legal_name=f"More {n}", acting_user=None)
    _verify("--full")  # a stored checkpoint at #6
    for n in range(3):
        services.organisation_create(legal_name=f"Later {n}", acting_user=None)
    AuditEvent.objects.filter(sequence=7).update(actor_label="mallory")
    AuditEvent.objects.filter(sequence=9).update(after={"legal_name": "Someone else"})
    with pytest.raises(CommandError) as broken:
        _verify(*(["--full"] if full else []))
    message = str(broken.value)
    assert "broken at event #7" in message
    assert "#9: content does not match its hash" in message
    assert "2 broken events" in message
    assert "#8" not in message  # an honest event between them is not reported


def test_a_tampering_before_and_after_a_deleted_row_are_all_reported(operator):
    for n in range(4):
        services.organisation_create(legal_name=f"More {n}", acting_user=None)
    AuditEvent.objects.filter(sequence=2).update(actor_label="mallory")
    AuditEvent.objects.filter(sequence=4).delete()
    AuditEvent.objects.filter(sequence=6).update(before={"x": 1})
    with pytest.raises(CommandError) as broken:
        _verify("--full")
    message = str(broken.value)
    assert "broken at event #2" in message
    assert "#5: event #4 is missing" in message
    assert "#6: content does not match its hash" in message


relink_migration = importlib.import_module("registry.migrations.0011_audit_actor_snapshot")


def test_the_migration_relinks_the_old_chain_and_an_operator_deleted_before_it_no_longer_breaks_it(operator):
    from django.apps import apps

    services.organisation_create(legal_name="By the system", acting_user=None)
    relink_migration.relink_with_actor_ids(apps, None)  # the chain as the previous release wrote it
    # What the previous release allowed: the operator deleted, its events' actor set to NULL.
    AuditEvent.objects.filter(actor=operator).update(actor=None)
    get_user_model().objects.filter(pk=operator.pk).delete()
    # And a real tampering, which the migration must not launder.
    AuditEvent.objects.filter(sequence=2).update(after={"legal_name": "Someone else"})
    relink_migration.relink_without_actor_ids(apps, None)
    with pytest.raises(CommandError) as broken:
        _verify("--full")
    message = str(broken.value)
    assert "broken at event #2:" in message and "content does not match its hash" in message
    # The honest events around it, the deleted operator's included, verify under the new links.
    assert "broken events in all" not in message and "#3" not in message and "#4" not in message


def test_the_migration_relinks_an_intact_old_chain_under_the_current_key(operator):
    from django.apps import apps

    from registry.models import AuditChainHead

    relink_migration.relink_with_actor_ids(apps, None)
    with pytest.raises(CommandError, match="broken at event #1: content does not match"):
        _verify("--full")  # old links do not verify as new ones
    relink_migration.relink_without_actor_ids(apps, None)
    assert _verify("--full").startswith("Audit log intact: 3 events verified.")
    head = AuditChainHead.objects.get(pk=1)
    assert head.last_hash == AuditEvent.objects.get(sequence=3).hash
    services.organisation_create(legal_name="After the upgrade", acting_user=operator)
    assert "4 events" in _verify()


def test_the_migration_relinks_a_chain_keyed_under_the_previous_releases_key_ids(operator):
    """The previous release named each link's key by the first 8 hex digits of the key's
    SHA-256; audit key ids are MACs now. An intact chain from it still verifies after the
    migration (the upgrade path of every existing deployment)."""
    from django.apps import apps

    from registry.audit import audit_keys

    key = audit_keys()[0]
    assert key.legacy_key_id and key.legacy_key_id != key.key_id
    relink_migration._relink(apps, holds=lambda event: True, key_id=key.legacy_key_id,
                             digest=lambda event: relink_migration._old_digest(event, key.secret, event.actor_id))
    relink_migration.relink_without_actor_ids(apps, None)
    assert _verify("--full").startswith("Audit log intact: 3 events verified.")
