"""Four-eyes in the registry admin (AUTHSERVICE["FOUR_EYES"], on by default): who recorded
or reviewed an application cannot approve it; offboarding is requested by one operator
and confirmed by another. Through the admin over HTTP with two (or three) operator
accounts, and at the services; the management commands stay single-step."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from registry import services
from registry.four_eyes import pending_action, pending_actions
from registry.models import AuditAction, AuditEvent, Participant, Status
from tests.audit import AuditTrail
from tests.keymaterial import ec_key

ONBOARD = "/admin/registry/participant/onboard/"
PASSWORD = "x-Very-long-pass-1"


def workflow_url(participant, slug):
    return reverse("admin:registry_participant_workflow", args=[participant.pk, slug])


def change_url(participant):
    return reverse("admin:registry_participant_change", args=[participant.pk])


class Operator:
    """A logged-in staff user of the "Registry operators" group (plus offboarding)."""

    def __init__(self, username: str) -> None:
        self.user = get_user_model().objects.create_user(username, password=PASSWORD, is_staff=True)
        self.user.groups.add(Group.objects.get(name="Registry operators"))
        self.user.user_permissions.add(Permission.objects.get(codename="offboard_participant"))
        self.http = Client()
        self.http.force_login(self.user)


@pytest.fixture
def operators(db, signing_key):
    call_command("create_admin_groups", verbosity=0)
    return Operator("alice"), Operator("bob"), Operator("carol")


def _record(operator: Operator, name: str = "Four Eyes Bank") -> Participant:
    response = operator.http.post(ONBOARD, {
        "new_organisation_name": name, "role": "LENDER", "base_url": "https://api.four-eyes.example",
        "public_key": ec_key().public_pem(), "confirm": "1",
    })
    assert response.status_code == 303
    return Participant.objects.get(organisation__legal_name=name)


def _approved(participant: Participant, operator: Operator) -> Participant:
    response = operator.http.post(workflow_url(participant, "approve"), {"confirm": "1"}, follow=True)
    assert response.redirect_chain[0][1] == 303  # to the one-time secret page
    assert response.status_code == 200 and b'id="client-secret"' in response.content
    participant.refresh_from_db()
    return participant


# --- approval ------------------------------------------------------------------------------

def test_the_operator_who_recorded_an_application_cannot_approve_it(operators):
    alice, bob, _ = operators
    participant = _record(alice)
    assert participant.recorded_by == alice.user
    events = AuditEvent.objects.count()
    refused = alice.http.post(workflow_url(participant, "approve"), {"confirm": "1"})
    assert refused.status_code == 400
    assert "you recorded this application, so another operator must approve it" in refused.content.decode()
    participant.refresh_from_db()
    assert participant.status == Status.APPLIED and participant.client is None
    assert AuditEvent.objects.count() == events
    approved = _approved(participant, bob)
    assert approved.status == Status.APPROVED and approved.approved_by == bob.user
    event = AuditEvent.objects.filter(action=AuditAction.PARTICIPANT_APPROVED).get()
    assert event.actor == bob.user


def test_the_reviewer_cannot_approve_either_a_third_operator_can(operators):
    alice, bob, carol = operators
    participant = _record(alice)
    assert bob.http.post(workflow_url(participant, "review"), {"confirm": "1"}).status_code == 303
    participant.refresh_from_db()
    assert participant.status == Status.UNDER_REVIEW and participant.reviewed_by == bob.user
    for operator, did in ((bob, "reviewed"), (alice, "recorded")):
        refused = operator.http.post(workflow_url(participant, "approve"), {"confirm": "1"})
        assert refused.status_code == 400
        assert f"you {did} this application" in refused.content.decode()
    assert _approved(participant, carol).status == Status.APPROVED


def test_the_participant_page_says_who_must_act_next(operators):
    alice, bob, carol = operators
    participant = _record(alice)
    page = carol.http.get(change_url(participant)).content.decode()
    assert "Waiting for review or approval by an operator other than alice." in page
    bob.http.post(workflow_url(participant, "review"), {"confirm": "1"})
    page = carol.http.get(change_url(participant)).content.decode()
    assert "Waiting for approval by an operator other than alice and bob." in page
    _approved(participant, carol)
    assert 'id="pending-action"' not in carol.http.get(change_url(participant)).content.decode()


def test_with_four_eyes_off_one_operator_may_record_and_approve(operators, settings):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "FOUR_EYES": False}
    alice, _, _ = operators
    participant = _record(alice)
    assert "Waiting for review or approval by an operator." in alice.http.get(change_url(participant)).content.decode()
    assert _approved(participant, alice).approved_by == alice.user


def test_the_service_refuses_self_approval_with_a_dedicated_error(organisation, admin_user, signing_key):
    participant = services.participant_apply(organisation=organisation, role="LENDER", base_url="https://s.example",
                                             public_key=ec_key().public_pem(), acting_user=admin_user)
    trail = AuditTrail()
    with pytest.raises(services.FourEyesRequired, match="you recorded this application"):
        services.participant_approve(participant=participant, acting_user=admin_user)
    trail.assert_none()
    action = pending_action(participant)
    assert action.step == "review or approval" and not action.may_act(admin_user)
    assert action.excluded_usernames == ("registrar",)


def _confirm(participant: Participant) -> dict:
    """The confirm-offboard form: the organisation's name typed."""
    return {"confirm": "1", "confirm_name": participant.organisation.legal_name}


# --- offboarding ------------------------------------------------------------------------------

@pytest.fixture
def approved(operators):
    alice, bob, _ = operators
    return _approved(_record(alice), bob)


def test_offboarding_is_requested_by_one_operator_and_confirmed_by_another(operators, approved, token_for):
    alice, bob, _ = operators
    client_id = approved.client.client_id
    assert bob.http.get(workflow_url(approved, "offboard")).status_code == 200  # the page still answers …
    direct = bob.http.post(workflow_url(approved, "offboard"), {"confirm": "1", "reason": "alone",
                                                                "confirm_name": approved.organisation.legal_name})
    assert direct.status_code == 400 and "another operator confirms it" in direct.content.decode()  # … but refuses
    page = alice.http.get(change_url(approved)).content.decode()
    assert workflow_url(approved, "request-offboard") in page and workflow_url(approved, "offboard") not in page

    trail = AuditTrail()
    requested = alice.http.post(workflow_url(approved, "request-offboard"), {"confirm": "1", "reason": "licence ended"})
    assert requested.status_code == 303
    approved.refresh_from_db()
    assert approved.status == Status.APPROVED and approved.offboarding_requested_by == alice.user
    (event,) = trail.new_events()
    assert event.action == AuditAction.OFFBOARDING_REQUESTED and event.actor == alice.user
    assert event.after["reason"] == "licence ended"
    page = bob.http.get(change_url(approved)).content.decode()
    assert "Offboarding requested by alice (licence ended): waiting for confirmation by an operator other than " \
           "alice." in page
    assert "workflow-confirm-offboard" in page and "workflow-request-offboard" not in page

    trail = AuditTrail()
    refused = alice.http.post(workflow_url(approved, "confirm-offboard"), _confirm(approved))
    assert refused.status_code == 400
    assert "you requested this offboarding, so another operator must confirm it" in refused.content.decode()
    approved.refresh_from_db()
    assert approved.status == Status.APPROVED
    trail.assert_none()

    confirmation = bob.http.get(workflow_url(approved, "confirm-offboard")).content.decode()
    assert client_id in confirmation  # the confirmation page lists what goes
    assert bob.http.post(workflow_url(approved, "confirm-offboard"), _confirm(approved)).status_code == 303
    approved.refresh_from_db()
    assert approved.status == Status.OFFBOARDED and approved.status_reason == "licence ended"
    assert not approved.offboarding_requested
    (event,) = trail.new_events()
    assert event.action == AuditAction.PARTICIPANT_OFFBOARDED and event.actor == bob.user
    assert event.after["offboarding_request"]["requested_by"] == "alice"


def test_an_offboarding_request_can_be_withdrawn(operators, approved):
    alice, bob, _ = operators
    alice.http.post(workflow_url(approved, "request-offboard"), {"confirm": "1", "reason": "mistake"})
    again = bob.http.post(workflow_url(approved, "request-offboard"), {"confirm": "1", "reason": "again"})
    assert again.status_code == 400 and "already requested by alice" in again.content.decode()
    trail = AuditTrail()
    assert alice.http.post(workflow_url(approved, "cancel-offboard"), {"confirm": "1"}).status_code == 303
    approved.refresh_from_db()
    assert not approved.offboarding_requested and approved.status == Status.APPROVED
    (event,) = trail.new_events()
    assert event.action == AuditAction.OFFBOARDING_CANCELLED and event.before["requested_by"] == "alice"
    late = bob.http.post(workflow_url(approved, "confirm-offboard"), _confirm(approved))
    assert late.status_code == 400 and "No offboarding has been requested" in late.content.decode()
    approved.refresh_from_db()
    assert approved.status == Status.APPROVED
    assert 'id="pending-action"' not in bob.http.get(change_url(approved)).content.decode()


def test_bulk_offboarding_only_requests_under_four_eyes(operators, onboard):
    alice, bob, _ = operators
    (first, _), (second, _) = onboard(), onboard()
    ids = [first.participant.pk, second.participant.pk]
    page = alice.http.post("/admin/registry/participant/", {"action": "offboard_selected", "_selected_action": ids})
    assert b"Yes, request their offboarding" in page.content
    alice.http.post("/admin/registry/participant/", {"action": "offboard_selected", "_selected_action": ids,
                                                     "post": "yes", "reason": "wind-down", "confirm_count": 2})
    participants = Participant.objects.filter(pk__in=ids)
    assert {p.status for p in participants} == {Status.APPROVED}
    assert {p.offboarding_requested_by for p in participants} == {alice.user}
    for participant in participants:
        assert alice.http.post(workflow_url(participant, "confirm-offboard"), _confirm(participant)).status_code == 400
        assert bob.http.post(workflow_url(participant, "confirm-offboard"), _confirm(participant)).status_code == 303
    assert {p.status for p in Participant.objects.filter(pk__in=ids)} == {Status.OFFBOARDED}


# --- the commands stay single-step ---------------------------------------------------------------

def test_commands_onboard_and_offboard_in_one_step_with_four_eyes_on(operators, tmp_path):
    alice, _, _ = operators
    key = tmp_path / "key.pem"
    key.write_text(ec_key().public_pem())
    out = StringIO()
    call_command("onboard", "--org-name", "Script Bank", "--role", "LENDER", "--base-url", "https://s.example",
                 "--public-key", str(key), "--json", "--actor", "alice", stdout=out)
    participant_id = json.loads(out.getvalue())["participant_id"]
    participant = Participant.objects.get(participant_id=participant_id)
    assert participant.status == Status.APPROVED and participant.approved_by == alice.user
    call_command("offboard", participant_id, "--reason", "scripted exit", "--actor", "alice", stdout=StringIO())
    participant.refresh_from_db()
    assert participant.status == Status.OFFBOARDED


# --- the queue and the setting ------------------------------------------------------------------

def test_pending_actions_lists_what_waits_oldest_first(operators, approved, django_assert_max_num_queries):
    alice, bob, _ = operators
    applied = _record(bob, "Second Bank")
    alice.http.post(workflow_url(approved, "request-offboard"), {"confirm": "1", "reason": "exit"})
    with django_assert_max_num_queries(1):
        queue = [(participant.organisation.legal_name, action.step, action.excluded_usernames)
                 for participant, action in pending_actions()]
    assert queue == [("Second Bank", "review or approval", ("bob",)),
                     ("Four Eyes Bank", "offboarding confirmation", ("alice",))]
    assert applied.status == Status.APPLIED


def test_four_eyes_must_be_a_boolean(settings):
    from django.core.exceptions import ImproperlyConfigured

    from authservice.conf import authservice_settings

    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "FOUR_EYES": "no"}
    with pytest.raises(ImproperlyConfigured, match="FOUR_EYES must be True or False"):
        authservice_settings.FOUR_EYES  # noqa: B018


@pytest.mark.ops
@pytest.mark.parametrize(("value", "expected"), [(None, "True"), ("false", "False"), ("true", "True")])
def test_the_environment_variable_sets_four_eyes(value, expected):
    environment = {name: text for name, text in os.environ.items() if name != "AUTHSERVICE_FOUR_EYES"}
    if value is not None:
        environment["AUTHSERVICE_FOUR_EYES"] = value
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from authservice.conf import authservice_settings; "
                               "print(authservice_settings.FOUR_EYES)"],
        env={**environment, "DJANGO_SETTINGS_MODULE": "authservice.settings"}, capture_output=True, text=True,
        check=True, cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert result.stdout.strip() == expected


def test_confirming_an_offboarding_needs_the_organisation_name_typed(operators, approved):
    alice, bob, _ = operators
    alice.http.post(workflow_url(approved, "request-offboard"), {"confirm": "1", "reason": "licence ended"})
    trail = AuditTrail()
    for typed in ("", "Four Eyes"):
        refused = bob.http.post(workflow_url(approved, "confirm-offboard"), {"confirm": "1", "confirm_name": typed})
        assert refused.status_code == 400
    assert "That is not the organisation" in refused.content.decode()
    approved.refresh_from_db()
    assert approved.status == Status.APPROVED and approved.offboarding_requested
    trail.assert_none()
    typed = {"confirm": "1", "confirm_name": "  four eyes   BANK "}  # case and spacing do not matter
    assert bob.http.post(workflow_url(approved, "confirm-offboard"), typed).status_code == 303
    approved.refresh_from_db()
    assert approved.status == Status.OFFBOARDED
