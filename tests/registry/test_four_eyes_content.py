"""Four-eyes over what is approved, not only who recorded it: whoever changes a pending
application (its endpoints, keys or organisation) becomes one of its makers and may not
approve it, and the approval records a digest of exactly what was approved, which the
approve page shows. Through the admin with three operators, and at the services."""

import hashlib
import json

import pytest
from django.core.management import call_command

from registry import services
from registry.four_eyes import approval_content, approval_digest
from registry.models import AuditAction, AuditEvent, Participant, Status
from tests.audit import AuditTrail
from tests.keymaterial import ec_key
from tests.registry.test_four_eyes import Operator, _approved, _record, change_url, workflow_url


@pytest.fixture
def operators(db, signing_key):
    call_command("create_admin_groups", verbosity=0)
    return Operator("alice"), Operator("bob"), Operator("carol")


def _add_endpoint_and_key(operator: Operator, participant: Participant) -> str:
    pem = ec_key().public_pem()
    assert operator.http.post(workflow_url(participant, "add-endpoint"),
                              {"url": "https://bobs-own.example/api"}).status_code == 303
    assert operator.http.post(workflow_url(participant, "add-key"), {"public_key": pem}).status_code == 303
    return pem


def test_an_operator_who_added_an_endpoint_and_key_to_an_application_cannot_approve_it(operators):
    alice, bob, carol = operators
    participant = _record(alice)
    _add_endpoint_and_key(bob, participant)
    events = AuditEvent.objects.count()
    refused = bob.http.post(workflow_url(participant, "approve"), {"confirm": "1"})
    assert refused.status_code == 400
    assert "you changed this application" in refused.content.decode()
    participant.refresh_from_db()
    assert participant.status == Status.APPLIED and participant.client is None
    assert AuditEvent.objects.count() == events
    # Nor is the step offered to bob, and the page says who must act.
    page = bob.http.get(change_url(participant)).content.decode()
    assert workflow_url(participant, "approve") not in page
    assert "by an operator other than alice and bob" in page
    assert _approved(participant, carol).approved_by == carol.user


def test_the_approval_records_a_digest_of_exactly_what_was_approved(operators):
    alice, bob, carol = operators
    participant = _record(alice)
    _add_endpoint_and_key(bob, participant)
    page = carol.http.get(workflow_url(participant, "approve")).content.decode()
    digest = approval_digest(participant)
    assert digest in page and "https://bobs-own.example/api" in page
    content = approval_content(participant)
    assert content["role"] == "LENDER" and len(content["keys"]) == 2 and len(content["endpoints"]) == 2
    assert content["organisation"]["legal_name"] == "Four Eyes Bank"
    assert content["grants"] == []
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert digest == hashlib.sha256(canonical).hexdigest()
    response = carol.http.post(workflow_url(participant, "approve"), {"confirm": "1", "digest": digest})
    assert response.status_code == 303
    event = AuditEvent.objects.get(action=AuditAction.PARTICIPANT_APPROVED)
    assert event.after["approved_digest"] == digest and event.after["approved"] == content


def test_an_application_changed_after_the_approve_page_was_opened_is_not_approved(operators):
    alice, _, carol = operators
    participant = _record(alice)
    digest = approval_digest(participant)
    services.public_key_add(participant=participant, key_material=ec_key().public_pem(), acting_user=alice.user)
    refused = carol.http.post(workflow_url(participant, "approve"), {"confirm": "1", "digest": digest})
    assert refused.status_code == 400
    assert "changed since" in refused.content.decode()
    participant.refresh_from_db()
    assert participant.status == Status.APPLIED and participant.client is None
    # The refusal shows what the application holds now, with its digest: confirming that approves it.
    now = approval_digest(participant)
    assert now != digest and f'name="digest" value="{now}"' in refused.content.decode()
    assert carol.http.post(workflow_url(participant, "approve"), {"confirm": "1", "digest": now}).status_code == 303


def test_a_grant_made_to_a_pending_application_changes_what_is_approved(operators):
    alice, _, carol = operators
    participant = _record(alice)
    digest = approval_digest(participant)
    # A grant names its target: at the registry, explicitly and with a registry scope.
    services.scope_define(name="registry.audit", acting_user=None)
    services.mapping_grant(client=participant, provider=None, at_registry=True, scopes="registry.audit",
                           acting_user=alice.user)
    assert approval_content(participant)["grants"] == [{"audience": "urn:ocen:registry", "scopes": "registry.audit"}]
    page = carol.http.get(workflow_url(participant, "approve")).content.decode()
    assert "registry.audit" in page and approval_digest(participant) in page
    refused = carol.http.post(workflow_url(participant, "approve"), {"confirm": "1", "digest": digest})
    assert refused.status_code == 400 and "changed since" in refused.content.decode()


@pytest.mark.parametrize("change", ["endpoint_add", "endpoint_remove", "public_key_add", "public_key_revoke",
                                    "organisation_update"])
def test_any_change_to_a_pending_application_makes_the_changer_a_maker(operators, change):
    alice, bob, carol = operators
    participant = _record(alice)
    services.endpoint_add(participant=participant, url="https://second.example/api", acting_user=alice.user)
    services.public_key_add(participant=participant, key_material=ec_key().public_pem(), acting_user=alice.user)
    if change == "endpoint_add":
        services.endpoint_add(participant=participant, url="https://third.example/api", acting_user=bob.user)
    elif change == "endpoint_remove":
        services.endpoint_remove(endpoint=participant.endpoints.last(), acting_user=bob.user)
    elif change == "public_key_add":
        services.public_key_add(participant=participant, key_material=ec_key().public_pem(), acting_user=bob.user)
    elif change == "public_key_revoke":
        services.public_key_revoke(key=participant.keys.last(), acting_user=bob.user)
    else:
        services.organisation_update(organisation=participant.organisation, legal_name="Four Eyes Bank plc",
                                     acting_user=bob.user)
    trail = AuditTrail()
    with pytest.raises(services.FourEyesRequired, match="you changed this application"):
        services.participant_approve(participant=participant, acting_user=bob.user)
    trail.assert_none()
    services.participant_approve(participant=participant, acting_user=carol.user)


def test_a_reviewer_who_changes_nothing_stays_a_reviewer_and_the_makers_are_kept(operators):
    alice, bob, carol = operators
    participant = _record(alice)
    services.participant_start_review(participant=participant, acting_user=bob.user)
    participant.refresh_from_db()
    assert participant.makers == [{"id": alice.user.pk, "username": "alice"}]
    with pytest.raises(services.FourEyesRequired, match="you reviewed this application"):
        services.participant_approve(participant=participant, acting_user=bob.user)
    services.participant_approve(participant=participant, acting_user=carol.user)
