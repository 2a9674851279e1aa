"""The registry's workflows through registry.services: each writes exactly one audit
event, refuses illegal transitions, and leaves nothing half-written."""

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from oauth2_provider.models import get_application_model

from registry import services
from registry.audit import verify_chain
from registry.models import AuditAction, AuditEvent, Endpoint, KeyStatus, Organisation, ResourceMapping, Status
from tests.keymaterial import ec_key, rsa_key

OAuthClient = get_application_model()


@pytest.fixture(autouse=True)
def _one_operator(settings, scope_catalogue):
    """These tests are about each workflow, not four-eyes (tests/registry/test_four_eyes.py):
    one administrator acts alone. The scopes granted here are in the catalogue."""
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "FOUR_EYES": False}


@pytest.fixture
def applied(organisation, admin_user, signing_key):
    return services.participant_apply(organisation=organisation, role="LENDER",
                                      base_url="HTTPS://API.Acme.Example:443/ocen/", public_key=ec_key().public_pem(),
                                      acting_user=admin_user)


def _snapshot(participant, status=None, client_id=None):
    participant.refresh_from_db()
    return {"status": status or participant.status, "role": participant.role,
            "participant_id": str(participant.participant_id),
            "client_id": client_id if client_id is not None else (
                participant.client.client_id if participant.client_id else None)}


def test_organisation_create_and_update_each_record_one_event(admin_user, audit):
    trail = audit()
    organisation = services.organisation_create(legal_name=" Beta Bank ", acting_user=admin_user)
    trail.assert_one(action=AuditAction.ORGANISATION_CREATED, actor=admin_user, before={},
                     after={"legal_name": "Beta Bank", "org_id": str(organisation.org_id)})
    trail = audit()
    services.organisation_update(organisation=organisation, website="https://beta.example", acting_user=admin_user)
    trail.assert_one(action=AuditAction.ORGANISATION_UPDATED, actor=admin_user, before={"website": ""},
                     after={"website": "https://beta.example"})
    trail = audit()
    services.organisation_update(organisation=organisation, website="https://beta.example", acting_user=admin_user)
    trail.assert_none()


def test_apply_normalises_the_url_and_records_one_event(organisation, admin_user, signing_key, audit):
    key = ec_key()
    trail = audit()
    applied = services.participant_apply(organisation=organisation, role="LENDER",
                                         base_url="HTTPS://API.Acme.Example:443/ocen/", public_key=key.public_pem(),
                                         acting_user=admin_user)
    assert applied.status == Status.APPLIED
    assert list(applied.endpoints.values_list("url", flat=True)) == ["https://api.acme.example/ocen"]
    trail.assert_one(action=AuditAction.PARTICIPANT_APPLIED, actor=admin_user, participant=applied, before={},
                     after={**_snapshot(applied), "base_url": "https://api.acme.example/ocen",
                            "key": {"kid": key.thumbprint(), "thumbprint": key.thumbprint()}})


@pytest.mark.parametrize(("url", "message"), [
    ("http://api.example", "https"), ("ftp://api.example", "not a valid URL"), ("not a url", "not a valid URL"),
    ("https://user:pw@api.example", "credentials"), ("https://api.example/?q=1", "query"), ("", "required"),
])
def test_bad_base_urls_are_refused(organisation, admin_user, url, message):
    with pytest.raises(ValidationError, match=message):
        services.participant_apply(organisation=organisation, role="LENDER", base_url=url,
                                   public_key=ec_key().public_pem(), acting_user=admin_user)
    assert not Endpoint.objects.exists()


def test_http_base_urls_allowed_by_the_development_setting(organisation, admin_user, settings):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "REGISTRY_ALLOW_HTTP_ENDPOINTS": True}
    participant = services.participant_apply(organisation=organisation, role="LENDER",
                                             base_url="http://127.0.0.1:9000/", public_key=ec_key().public_pem(),
                                             acting_user=admin_user)
    assert participant.endpoints.get().url == "http://127.0.0.1:9000"


def test_unknown_role_is_refused(organisation, admin_user):
    with pytest.raises(ValidationError, match="not a role"):
        services.participant_apply(organisation=organisation, role="BANKER", base_url="https://a.example",
                                   public_key=ec_key().public_pem(), acting_user=admin_user)


def test_one_organisation_holds_each_role_once_but_may_hold_several_roles(organisation, admin_user, applied):
    with pytest.raises(ValidationError, match="already holds that role"):
        services.participant_apply(organisation=organisation, role="LENDER", base_url="https://b.example",
                                   public_key=ec_key().public_pem(), acting_user=admin_user)
    agent = services.participant_apply(organisation=organisation, role="LOAN_AGENT",
                                       base_url="https://b.example", public_key=ec_key().public_pem(),
                                       acting_user=admin_user)
    assert agent.participant_id != applied.participant_id


def test_approve_creates_client_and_registry_mapping_and_returns_the_secret_once(applied, admin_user, audit):
    from registry.four_eyes import approval_content, approval_digest

    before = _snapshot(applied)
    approved, digest = approval_content(applied), approval_digest(applied)
    trail = audit()
    credentials = services.participant_approve(participant=applied, acting_user=admin_user)
    applied.refresh_from_db()
    assert applied.status == Status.APPROVED
    assert applied.approved_by == admin_user and applied.approved_at is not None
    assert applied.client.client_id == credentials.client_id
    assert credentials.client_secret not in applied.client.client_secret
    assert "***" in repr(credentials) and credentials.client_secret not in repr(credentials)
    mapping = ResourceMapping.objects.get(client=applied)
    assert mapping.provider is None and mapping.scopes == "registry.read"
    event = trail.assert_one(action=AuditAction.PARTICIPANT_APPROVED, actor=admin_user, participant=applied,
                             before=before, after={**_snapshot(applied), "granted": {"registry": "registry.read"},
                                                   "approved": approved, "approved_digest": digest})
    assert event.after["client_id"] == credentials.client_id
    assert credentials.client_secret not in str(event.before) + str(event.after)


def test_double_approval_is_refused_and_creates_no_second_client(applied, admin_user):
    services.participant_approve(participant=applied, acting_user=admin_user)
    with pytest.raises(ValidationError, match="cannot become approved"):
        services.participant_approve(participant=applied, acting_user=admin_user)
    assert OAuthClient.objects.count() == 1


def test_review_then_reject_with_reason(applied, admin_user, audit):
    trail = audit()
    services.participant_start_review(participant=applied, acting_user=admin_user)
    trail.assert_one(action=AuditAction.PARTICIPANT_UNDER_REVIEW, actor=admin_user, participant=applied,
                     before=_snapshot(applied, status="APPLIED"), after=_snapshot(applied))
    trail = audit()
    with pytest.raises(ValidationError, match="reason"):
        services.participant_reject(participant=applied, reason=" ", acting_user=admin_user)
    trail.assert_none()
    rejected = services.participant_reject(participant=applied, reason="incomplete KYC", acting_user=admin_user)
    assert rejected.status == Status.REJECTED and rejected.status_reason == "incomplete KYC"
    trail.assert_one(action=AuditAction.PARTICIPANT_REJECTED, actor=admin_user, participant=applied,
                     before=_snapshot(applied, status="UNDER_REVIEW"),
                     after={**_snapshot(applied), "reason": "incomplete KYC"})
    with pytest.raises(ValidationError):
        services.participant_approve(participant=rejected, acting_user=admin_user)


@pytest.mark.parametrize(("path", "refused"), [
    (["approve", "suspend", "reinstate", "suspend"], "review"),
    (["approve"], "reinstate"),
    ([], "suspend"),
    (["approve"], "review"),
])
def test_illegal_transitions_are_refused(applied, admin_user, path, refused):
    steps = {
        "approve": lambda p: services.participant_approve(participant=p, acting_user=admin_user),
        "suspend": lambda p: services.participant_suspend(participant=p, reason="r", acting_user=admin_user),
        "reinstate": lambda p: services.participant_reinstate(participant=p, acting_user=admin_user),
        "review": lambda p: services.participant_start_review(participant=p, acting_user=admin_user),
    }
    for step in path:
        steps[step](applied)
    count = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        steps[refused](applied)
    assert AuditEvent.objects.count() == count


def test_keys_rollover_and_the_last_key_cannot_be_revoked(applied, admin_user, audit):
    services.participant_approve(participant=applied, acting_user=admin_user)
    (first,) = applied.keys.all()
    trail = audit()
    with pytest.raises(ValidationError, match="at least one active key"):
        services.public_key_revoke(key=first, acting_user=admin_user)
    trail.assert_none()
    new_key = rsa_key()
    added = services.public_key_add(participant=applied, key_material=new_key.public_pem(), acting_user=admin_user)
    trail.assert_one(action=AuditAction.KEY_ADDED, actor=admin_user, participant=applied, before={},
                     after={"kid": new_key.thumbprint(), "thumbprint": new_key.thumbprint(), "alg": "RS256",
                            "not_after": None})
    assert added.kid == new_key.thumbprint()
    trail = audit()
    services.public_key_revoke(key=first, acting_user=admin_user)
    first.refresh_from_db()
    assert first.status == KeyStatus.REVOKED and first.revoked_at is not None
    trail.assert_one(action=AuditAction.KEY_REVOKED, actor=admin_user, participant=applied,
                     before={"kid": first.kid, "status": "ACTIVE"}, after={"kid": first.kid, "status": "REVOKED"})


def test_the_last_endpoint_of_an_approved_participant_cannot_be_removed(applied, admin_user, audit):
    services.participant_approve(participant=applied, acting_user=admin_user)
    (only,) = applied.endpoints.all()
    trail = audit()
    with pytest.raises(ValidationError, match="at least one API base URL"):
        services.endpoint_remove(endpoint=only, acting_user=admin_user)
    trail.assert_none()
    services.endpoint_add(participant=applied, url="https://backup.acme.example", acting_user=admin_user)
    trail.assert_one(action=AuditAction.ENDPOINT_ADDED, actor=admin_user, participant=applied, before={},
                     after={"url": "https://backup.acme.example"})
    trail = audit()
    services.endpoint_remove(endpoint=only, acting_user=admin_user)
    trail.assert_one(action=AuditAction.ENDPOINT_REMOVED, actor=admin_user, participant=applied,
                     before={"url": "https://api.acme.example/ocen"}, after={})
    assert list(applied.endpoints.values_list("url", flat=True)) == ["https://backup.acme.example"]


def test_mapping_grant_validates_scopes_and_a_no_op_writes_nothing(onboard, admin_user, audit):
    (client_creds, _), (provider_creds, _) = onboard("LOAN_AGENT"), onboard("LENDER")
    client, provider = client_creds.participant, provider_creds.participant
    trail = audit()
    with pytest.raises(ValidationError, match="not a valid scope"):
        services.mapping_grant(client=client, provider=provider, scopes='ocen.loan "bad"', acting_user=admin_user)
    with pytest.raises(ValidationError, match="itself"):
        services.mapping_grant(client=client, provider=client, scopes="x", acting_user=admin_user)
    trail.assert_none()
    services.mapping_grant(client=client, provider=provider, scopes="ocen.loan ocen.offer", acting_user=admin_user)
    details = {"provider": str(provider.participant_id), "audience": provider.audience,
               "scopes": "ocen.loan ocen.offer"}
    trail.assert_one(action=AuditAction.MAPPING_GRANTED, actor=admin_user, participant=client, before={},
                     after=details)
    trail = audit()
    services.mapping_grant(client=client, provider=provider, scopes="ocen.offer ocen.loan", acting_user=admin_user)
    trail.assert_none()
    mapping = ResourceMapping.objects.get(client=client, provider=provider)
    services.mapping_remove(mapping=mapping, acting_user=admin_user)
    trail.assert_one(action=AuditAction.MAPPING_REMOVED, actor=admin_user, participant=client, before=details,
                     after={})


def test_offboard_runs_all_four_steps_in_one_event(onboard, admin_user, token_for, audit):
    (creds, _), (other, _) = onboard("LENDER"), onboard("LOAN_AGENT")
    participant = creds.participant
    services.mapping_grant(client=other.participant, provider=participant, scopes="ocen.loan",
                           acting_user=admin_user)
    client = participant.client
    assert token_for(client, creds.client_secret).status_code == 200
    before = _snapshot(participant)
    trail = audit()
    removed = services.participant_offboard(participant=participant, reason="licence withdrawn",
                                            acting_user=admin_user)
    participant.refresh_from_db()
    assert participant.status == Status.OFFBOARDED
    assert participant.client is None
    assert not OAuthClient.objects.filter(client_id=creds.client_id).exists()
    assert not participant.endpoints.exists()
    assert not participant.keys.filter(status=KeyStatus.ACTIVE).exists()
    assert not ResourceMapping.objects.filter(client=participant).exists()
    assert not ResourceMapping.objects.filter(provider=participant).exists()
    assert removed["client_id"] == creds.client_id
    assert len(removed["mappings"]) == 2
    trail.assert_one(action=AuditAction.PARTICIPANT_OFFBOARDED, actor=admin_user, participant=participant,
                     before=before, after={**_snapshot(participant), "reason": "licence withdrawn",
                                           "removed": removed})
    # The organisation and the participant's history stay.
    assert Organisation.objects.filter(pk=participant.organisation_id).exists()
    assert AuditEvent.objects.filter(participant=participant).count() >= 3
    trail = audit()
    with pytest.raises(ValidationError):
        services.participant_offboard(participant=participant, reason="again", acting_user=admin_user)
    trail.assert_none()


def test_suspend_reinstate_and_rotate_each_record_one_exact_event(onboard, admin_user, audit, clock):
    creds, _ = onboard()
    participant = creds.participant
    approved = _snapshot(participant)
    clock.at(0.4)
    trail = audit()
    services.participant_suspend(participant=participant, reason="audit", acting_user=admin_user)
    trail.assert_one(action=AuditAction.PARTICIPANT_SUSPENDED, actor=admin_user, participant=participant,
                     before=approved, after={**approved, "status": "SUSPENDED", "reason": "audit",
                                             "tokens_not_before": _utc(clock.second + 1)})
    clock.at(3.0)
    trail = audit()
    services.participant_reinstate(participant=participant, acting_user=admin_user)
    trail.assert_one(action=AuditAction.PARTICIPANT_REINSTATED, actor=admin_user, participant=participant,
                     before={**approved, "status": "SUSPENDED"},
                     after={**approved, "tokens_not_before": _utc(clock.second + 3)})
    trail = audit()
    services.participant_rotate_secret(participant=participant, grace_seconds=60, acting_user=admin_user)
    trail.assert_one(action=AuditAction.CLIENT_SECRET_ROTATED, actor=admin_user, participant=participant,
                     before={}, after={"client_id": creds.client_id, "grace_seconds": 60, "revoke_tokens": False,
                                       "force": False})
    trail = audit()
    services.participant_rotate_secret(participant=participant, revoke_tokens=True, force=True,
                                       acting_user=admin_user)
    trail.assert_one(action=AuditAction.CLIENT_SECRET_ROTATED, actor=admin_user, participant=participant,
                     before={}, after={"client_id": creds.client_id, "grace_seconds": 0, "revoke_tokens": True,
                                       "force": True})


def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_revoke_tokens_records_one_exact_event(onboard, admin_user, audit, clock):
    creds, _ = onboard()
    participant = creds.participant
    clock.at(0.3)
    trail = audit()
    cutoff = services.participant_revoke_tokens(participant=participant, reason=" leaked token ",
                                                acting_user=admin_user)
    assert cutoff == datetime.fromtimestamp(clock.second + 1, tz=UTC)
    trail.assert_one(action=AuditAction.TOKENS_REVOKED, actor=admin_user, participant=participant,
                     before={"tokens_not_before": None},
                     after={"tokens_not_before": _utc(clock.second + 1), "reason": "leaked token"})
    clock.at(2.5)
    trail = audit()
    services.participant_revoke_tokens(participant=participant, reason="again", acting_user=None)
    trail.assert_one(action=AuditAction.TOKENS_REVOKED, actor=None, participant=participant,
                     before={"tokens_not_before": _utc(clock.second + 1)},
                     after={"tokens_not_before": _utc(clock.second + 3), "reason": "again"})
    participant.refresh_from_db()
    assert participant.status == Status.APPROVED
    assert participant.client.is_active


def test_revoke_tokens_of_a_suspended_participant_is_allowed(onboard, admin_user):
    creds, _ = onboard()
    services.participant_suspend(participant=creds.participant, reason="check", acting_user=admin_user)
    services.participant_revoke_tokens(participant=creds.participant, reason="leak", acting_user=admin_user)
    creds.participant.refresh_from_db()
    assert creds.participant.status == Status.SUSPENDED and not creds.participant.client.is_active


def test_revoke_tokens_needs_a_reason_and_a_client(applied, onboard, admin_user, audit):
    creds, _ = onboard()
    trail = audit()
    with pytest.raises(ValidationError, match="reason is required"):
        services.participant_revoke_tokens(participant=creds.participant, reason="  ", acting_user=admin_user)
    with pytest.raises(ValidationError, match="approved or suspended"):
        services.participant_revoke_tokens(participant=applied, reason="leak", acting_user=admin_user)
    trail.assert_none()
    services.participant_reject(participant=applied, reason="no", acting_user=admin_user)
    trail = audit()
    with pytest.raises(ValidationError, match="approved or suspended"):
        services.participant_revoke_tokens(participant=applied, reason="leak", acting_user=admin_user)
    trail.assert_none()
    assert OAuthClient.objects.get(client_id=creds.client_id).tokens_not_before is None


def test_every_workflow_keeps_the_audit_chain_intact(onboard, admin_user):
    (creds, _), _ = onboard(), onboard()
    services.participant_rotate_secret(participant=creds.participant, acting_user=admin_user)
    services.participant_suspend(participant=creds.participant, reason="audit", acting_user=admin_user)
    services.participant_reinstate(participant=creds.participant, acting_user=admin_user)
    services.participant_offboard(participant=creds.participant, reason="exit", acting_user=admin_user)
    report = verify_chain()
    assert report.ok, report.reason
    assert report.checked == AuditEvent.objects.count() >= 10
