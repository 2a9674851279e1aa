"""Management commands: the same services, JSON output, and clean refusals."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from registry.models import AuditEvent, Organisation, Participant, ResourceMapping, Status
from tests.audit import AuditTrail
from tests.keymaterial import ec_key, rsa_1024

# Grants name scopes of the catalogue.
pytestmark = pytest.mark.usefixtures("scope_catalogue")


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text(ec_key().public_pem())
    return path


def _onboard(key_file, name="Cmd Bank", role="LENDER", url="https://cmd.example"):
    return json.loads(_call("onboard", "--org-name", name, "--role", role, "--base-url", url,
                            "--public-key", str(key_file), "--json"))


def test_onboard_json_prints_only_the_credentials(signing_key, key_file, token_for):
    out = _call("onboard", "--org-name", "Cmd Bank", "--role", "LENDER", "--base-url", "https://cmd.example",
                "--public-key", str(key_file), "--json")
    payload = json.loads(out)  # the whole of stdout is one JSON document
    # the stated four, and (added in a compatible way) the kid the participant signs with
    assert set(payload) == {"participant_id", "client_id", "client_secret", "org_id", "kid"}
    participant = Participant.objects.get(participant_id=payload["participant_id"])
    assert payload["kid"] == participant.keys.get().kid
    assert participant.status == Status.APPROVED
    assert token_for(participant.client, payload["client_secret"]).status_code == 200


def test_onboard_reuses_an_organisation_by_org_id(signing_key, key_file, tmp_path):
    first = _onboard(key_file)
    other_key = tmp_path / "other.pem"
    other_key.write_text(ec_key().public_jwk())
    second = json.loads(_call("onboard", "--org-name", "ignored", "--role", "LOAN_AGENT", "--base-url",
                              "https://agent.example", "--public-key", str(other_key), "--org-id", first["org_id"],
                              "--json"))
    assert second["org_id"] == first["org_id"]
    assert Organisation.objects.count() == 1


@pytest.mark.parametrize(("change", "message"), [
    ({"--base-url": "http://insecure.example"}, "https"),
    ({"--public-key": "/no/such/file"}, "Cannot read"),
    ({"--org-id": "00000000-0000-0000-0000-000000000000"}, "No organisation"),
    ({"key": "weak"}, "2048"),
])
def test_onboard_refusals_write_nothing(signing_key, key_file, tmp_path, change, message):
    args = {"--org-name": "Bad Bank", "--role": "LENDER", "--base-url": "https://bad.example",
            "--public-key": str(key_file)}
    if change.pop("key", None):
        weak = tmp_path / "weak.pem"
        weak.write_text(rsa_1024().public_pem())
        args["--public-key"] = str(weak)
    args.update(change)
    trail = AuditTrail()
    with pytest.raises(CommandError, match=message):
        _call("onboard", *[item for pair in args.items() for item in pair])
    assert not Participant.objects.exists()
    assert not Organisation.objects.exists()
    trail.assert_none()


def test_bad_role_is_a_usage_error(signing_key, key_file):
    with pytest.raises(CommandError):
        _call("onboard", "--org-name", "X", "--role", "BANKER", "--base-url", "https://x.example",
              "--public-key", str(key_file))


@pytest.fixture
def lender_and_agent(signing_key, key_file, tmp_path):
    lender = _onboard(key_file)
    agent_key = tmp_path / "agent.pem"
    agent_key.write_text(ec_key().public_pem())
    agent = _onboard(agent_key, name="Agent", role="LOAN_AGENT", url="https://agent.example")
    return lender, agent


def _participant(payload) -> Participant:
    return Participant.objects.get(participant_id=payload["participant_id"])


def test_grant_access_maps_the_client_to_the_provider(lender_and_agent, token_for):
    lender, agent = lender_and_agent
    assert "ocen.loan" in _call("grant_access", agent["participant_id"], lender["participant_id"],
                                "--scopes", "ocen.loan")
    assert ResourceMapping.objects.filter(provider__participant_id=lender["participant_id"]).count() == 1
    token = token_for(_participant(agent).client, agent["client_secret"], scope="ocen.loan")
    assert token.status_code == 200, token.content


def test_suspend_stops_the_client(lender_and_agent, token_for):
    _, agent = lender_and_agent
    _call("suspend", agent["participant_id"], "--reason", "check")
    assert _participant(agent).status == Status.SUSPENDED
    assert token_for(_participant(agent).client, agent["client_secret"]).status_code == 401


def test_reinstate_lets_the_client_back_in(lender_and_agent, token_for):
    _, agent = lender_and_agent
    _call("suspend", agent["participant_id"], "--reason", "check")
    _call("reinstate", agent["participant_id"])
    assert _participant(agent).status == Status.APPROVED
    assert token_for(_participant(agent).client, agent["client_secret"]).status_code == 200


def test_rotate_client_secret_json_replaces_the_secret(lender_and_agent, token_for):
    _, agent = lender_and_agent
    rotated = json.loads(_call("rotate_client_secret", agent["participant_id"], "--json"))
    client = _participant(agent).client
    assert token_for(client, agent["client_secret"]).status_code == 401
    assert token_for(client, rotated["client_secret"]).status_code == 200


def test_rotate_client_secret_revoke_tokens_json_has_the_same_keys(lender_and_agent):
    _, agent = lender_and_agent
    out = _call("rotate_client_secret", agent["participant_id"], "--revoke-tokens", "--json")
    assert set(json.loads(out)) == {"participant_id", "client_id", "client_secret"}
    assert _participant(agent).client.tokens_not_before is not None


def test_rotate_client_secret_refuses_grace_with_revoke_tokens(lender_and_agent):
    _, agent = lender_and_agent
    count = AuditEvent.objects.count()
    with pytest.raises(CommandError, match="grace period"):
        _call("rotate_client_secret", agent["participant_id"], "--grace", "60", "--revoke-tokens")
    assert AuditEvent.objects.count() == count
    assert _participant(agent).client.tokens_not_before is None


def test_revoke_tokens_prints_the_participant_and_its_tokens_not_before(lender_and_agent):
    _, agent = lender_and_agent
    out = _call("revoke_tokens", agent["participant_id"], "--reason", "leak")
    cutoff = _participant(agent).client.tokens_not_before
    assert agent["participant_id"] in out
    assert cutoff.strftime("%Y-%m-%dT%H:%M:%SZ") in out
    assert AuditEvent.objects.order_by("-sequence").first().action == "TOKENS_REVOKED"


@pytest.mark.parametrize("state", ["blank reason", "APPLIED", "REJECTED"])
def test_revoke_tokens_refusals_write_nothing(lender_and_agent, tmp_path, state):
    from registry import services

    lender, _ = lender_and_agent
    participant_id, reason = lender["participant_id"], "leak"
    if state == "blank reason":
        reason = "   "
    else:
        key = tmp_path / "applicant.pem"
        key.write_text(ec_key().public_pem())
        applicant = services.participant_apply(organisation=_participant(lender).organisation, role="KYC_PARTNER",
                                               base_url="https://kyc.example", public_key=key.read_text(),
                                               acting_user=None)
        if state == "REJECTED":
            services.participant_reject(participant=applicant, reason="no", acting_user=None)
        participant_id = str(applicant.participant_id)
    count = AuditEvent.objects.count()
    with pytest.raises(CommandError, match="reason is required" if state == "blank reason" else "approved or"):
        _call("revoke_tokens", participant_id, "--reason", reason)
    assert AuditEvent.objects.count() == count
    assert _participant(lender).client.tokens_not_before is None


def test_offboard_removes_the_provider_and_its_mappings(lender_and_agent):
    lender, agent = lender_and_agent
    _call("grant_access", agent["participant_id"], lender["participant_id"], "--scopes", "ocen.loan")
    assert "Offboarded" in _call("offboard", lender["participant_id"], "--reason", "exit")
    assert _participant(lender).status == Status.OFFBOARDED
    assert not ResourceMapping.objects.filter(client__participant_id=agent["participant_id"],
                                              provider__isnull=False).exists()


def test_create_admin_groups_is_idempotent(db):
    first = _call("create_admin_groups")
    assert _call("create_admin_groups") == first
    assert "Registry operators:" in first and "Registry auditors:" in first


@pytest.mark.parametrize("command", ["offboard", "suspend", "reinstate", "rotate_client_secret", "revoke_tokens"])
def test_unknown_or_malformed_participant_ids_are_refused(db, command):
    extra = ["--reason", "r"] if command in {"offboard", "suspend", "revoke_tokens"} else []
    with pytest.raises(CommandError, match="not a participant id"):
        _call(command, "nope", *extra)
    with pytest.raises(CommandError, match="No participant"):
        _call(command, "00000000-0000-0000-0000-000000000000", *extra)


def test_grant_access_refuses_bad_scopes(signing_key, key_file, tmp_path):
    lender = _onboard(key_file)
    other = tmp_path / "o.pem"
    other.write_text(ec_key().public_pem())
    agent = _onboard(other, name="A2", role="LOAN_AGENT", url="https://a2.example")
    count = AuditEvent.objects.count()
    with pytest.raises(CommandError, match="not a valid scope"):
        _call("grant_access", agent["participant_id"], lender["participant_id"], "--scopes", 'a "b"')
    assert AuditEvent.objects.count() == count


def test_verify_audit_log_detects_a_tampered_row(signing_key, key_file):
    _onboard(key_file)
    assert "intact" in _call("verify_audit_log")
    event = AuditEvent.objects.order_by("sequence")[1]
    AuditEvent.objects.filter(pk=event.pk).update(after={**event.after, "status": "REJECTED"})
    with pytest.raises(CommandError, match=f"broken at event #{event.sequence}"):
        _call("verify_audit_log", "--full")  # before the last verified checkpoint: only --full re-reads it


def test_verify_audit_log_detects_a_deleted_row(signing_key, key_file):
    _onboard(key_file)
    AuditEvent.objects.filter(sequence=2).delete()
    with pytest.raises(CommandError, match="missing"):
        _call("verify_audit_log")


def test_verify_audit_log_detects_truncation(signing_key, key_file):
    _onboard(key_file)
    last = AuditEvent.objects.order_by("-sequence").first()
    last.delete()
    with pytest.raises(CommandError, match="deleted from the end"):
        _call("verify_audit_log")
