"""Every state-changing management command records a person: ``--actor USERNAME`` (an
active staff user holding the command's permission, checked before anything changes) or
else the operating-system user ("os:NAME"), never a bare "system"."""

import getpass
import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command

from registry.audit import verify_chain
from registry.models import AuditAction, AuditEvent, Participant, ResourceMapping, Status
from tests.audit import AuditTrail
from tests.keymaterial import ec_key

pytestmark = pytest.mark.usefixtures("scope_catalogue")

User = get_user_model()


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text(ec_key().public_pem())
    return path


def _onboard_args(key_file, name="Actor Bank", role="LENDER"):
    host = role.lower().replace("_", "-")
    return ["onboard", "--org-name", name, "--role", role, "--base-url", f"https://{host}.example",
            "--public-key", str(key_file), "--json"]


@pytest.fixture
def groups(db):
    call_command("create_admin_groups", verbosity=0)


def _staff(username, group="Registry operators", **fields):
    user = User.objects.create_user(username, password="x-Very-long-pass-1", is_staff=True, **fields)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def pair(signing_key, groups, tmp_path):
    """An approved lender and loan agent, onboarded by a script."""
    keys = []
    for role in ("LENDER", "LOAN_AGENT"):
        path = tmp_path / f"{role}.pem"
        path.write_text(ec_key().public_pem())
        keys.append(json.loads(_call(*_onboard_args(path, name=f"{role} Org", role=role))))
    return keys


def test_without_actor_the_operating_system_user_is_recorded(signing_key, key_file, monkeypatch):
    monkeypatch.setattr(getpass, "getuser", lambda: "alice")
    trail = AuditTrail()
    _call(*_onboard_args(key_file))
    events = trail.new_events()
    assert [event.action for event in events] == [AuditAction.ORGANISATION_CREATED,
                                                   AuditAction.PARTICIPANT_APPLIED,
                                                   AuditAction.PARTICIPANT_APPROVED]
    assert {(event.actor_id, event.actor_label) for event in events} == {(None, "os:alice")}
    assert Participant.objects.get().approved_by is None
    assert verify_chain().ok


def test_without_a_login_name_the_uid_is_recorded(signing_key, key_file, monkeypatch):
    def no_name():
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_name)
    trail = AuditTrail()
    _call(*_onboard_args(key_file))
    labels = {event.actor_label for event in trail.new_events()}
    assert len(labels) == 1 and labels.pop().startswith("os:uid")


def test_actor_records_the_staff_user(signing_key, key_file, groups):
    operator = _staff("olivia")
    trail = AuditTrail()
    payload = json.loads(_call(*_onboard_args(key_file), "--actor", "olivia"))
    assert set(payload) == {"participant_id", "client_id", "client_secret", "org_id", "kid"}  # as without --actor
    assert {(event.actor_id, event.actor_label) for event in trail.new_events()} == {(operator.pk, "olivia")}
    assert Participant.objects.get().approved_by == operator
    assert verify_chain().ok


@pytest.mark.parametrize(("setup", "message"), [
    (lambda: None, "no such user"),
    (lambda: _staff("olivia", is_active=False), "inactive"),
    (lambda: User.objects.create_user("olivia", password="x-Very-long-pass-1"), "not a staff user"),
    (lambda: _staff("olivia", group="Registry auditors"), "lacks the permission registry.onboard_participant"),
])
def test_a_bad_actor_is_refused_and_nothing_changes(signing_key, key_file, groups, setup, message):
    setup()
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError, match=message):
        _call(*_onboard_args(key_file), "--actor", "olivia")
    assert not Participant.objects.exists()
    assert AuditEvent.objects.count() == events


# Each state-changing command, its permission and arguments (after the participant ids).
COMMANDS = {
    "offboard": ("offboard_participant", lambda lender, agent: [lender, "--reason", "exit"]),
    "suspend": ("suspend_participant", lambda lender, agent: [lender, "--reason", "check"]),
    "reinstate": ("suspend_participant", lambda lender, agent: [lender]),
    "rotate_client_secret": ("rotate_participant_secret", lambda lender, agent: [lender, "--json"]),
    "revoke_tokens": ("rotate_participant_secret", lambda lender, agent: [lender, "--reason", "leak"]),
    "grant_access": ("manage_resource_mappings", lambda lender, agent: [agent, lender, "--scopes", "ocen.loan"]),
    "define_scope": ("manage_scopes", lambda lender, agent: ["ocen.new", "--description", "New"]),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_actor_without_its_permission(pair, command):
    permission, arguments = COMMANDS[command]
    lender, agent = (payload["participant_id"] for payload in pair)
    if command == "reinstate":
        _call("suspend", lender, "--reason", "first")
    user = _staff("olivia", group="Registry auditors")
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError, match=f"lacks the permission registry.{permission}"):
        _call(command, *arguments(lender, agent), "--actor", "olivia")
    assert AuditEvent.objects.count() == events

    user.user_permissions.add(Permission.objects.get(codename=permission))
    user = User.objects.get(pk=user.pk)  # a fresh permission cache
    trail = AuditTrail()
    _call(command, *arguments(lender, agent), "--actor", "olivia")
    events = trail.new_events()
    assert events and {(event.actor_id, event.actor_label) for event in events} == {(user.pk, "olivia")}
    assert verify_chain().ok


def test_commands_keep_their_output_with_an_actor(pair, groups):
    _staff("olivia")
    lender, agent = (payload["participant_id"] for payload in pair)
    out = _call("grant_access", agent, lender, "--scopes", "ocen.loan", "--actor", "olivia")
    assert "may use ocen.loan at" in out
    assert ResourceMapping.objects.filter(provider__participant_id=lender).get().scopes == "ocen.loan"
    _call("suspend", lender, "--reason", "check", "--actor", "olivia")
    assert Participant.objects.get(participant_id=lender).status == Status.SUSPENDED
