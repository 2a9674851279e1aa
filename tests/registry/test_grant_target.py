"""A grant names its target: never a provider's scope at the registry by an empty field,
and a provider that is not approved only with an explicit confirmation."""

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from registry import services
from registry.models import AuditAction, AuditEvent, ResourceMapping, Status
from tests.keymaterial import ec_key

pytestmark = pytest.mark.usefixtures("scope_catalogue")


@pytest.fixture
def browser(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


def grant_url(participant) -> str:
    return reverse("admin:registry_participant_workflow", args=[participant.pk, "grant-access"])


@pytest.fixture
def agent(onboard):
    creds, _ = onboard("LOAN_AGENT", "Agent Co")
    return creds


@pytest.fixture
def applied_lender(organisation, admin_user):
    return services.participant_apply(organisation=organisation, role="LENDER", base_url="https://applied.example",
                                      public_key=ec_key().public_pem(), acting_user=admin_user)


def _mappings(participant) -> dict[str, str]:
    return {mapping.audience: mapping.scopes for mapping in ResourceMapping.objects.filter(client=participant)}


def test_the_admin_grant_with_no_participant_grants_nothing(browser, agent, token_for):
    before, events = _mappings(agent.participant), AuditEvent.objects.count()
    response = browser.post(grant_url(agent.participant), {"direction": "client", "other": "", "scopes": "ocen.loan"})
    assert response.status_code == 400
    assert "Choose the provider" in response.content.decode()
    assert _mappings(agent.participant) == before and AuditEvent.objects.count() == events
    refused = token_for(agent.participant.client, agent.client_secret, scope="ocen.loan")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


def test_the_grant_service_refuses_a_grant_without_a_target(agent, admin_user):
    before = _mappings(agent.participant)
    with pytest.raises(ValidationError, match="provider"):
        services.mapping_grant(client=agent.participant, provider=None, scopes="ocen.loan", acting_user=admin_user)
    assert _mappings(agent.participant) == before


def test_a_providers_scope_is_never_granted_at_the_registry(agent, admin_user, browser):
    with pytest.raises(ValidationError, match="registry"):
        services.mapping_grant(client=agent.participant, provider=None, at_registry=True, scopes="ocen.loan",
                               acting_user=admin_user)
    response = browser.post(grant_url(agent.participant), {"direction": "registry", "scopes": "ocen.loan"})
    assert response.status_code == 400
    assert _mappings(agent.participant) == {"urn:ocen:registry": "registry.read"}


def test_a_registry_scope_is_granted_at_the_registry_only_when_said_so(agent, admin_user, browser, onboard,
                                                                       token_for):
    lender, _ = onboard("LENDER", "Lender Bank")
    with pytest.raises(ValidationError, match="registry"):
        services.mapping_grant(client=agent.participant, provider=lender.participant, scopes="registry.audit",
                               acting_user=admin_user)
    response = browser.post(grant_url(agent.participant), {"direction": "registry", "scopes": "registry.audit"})
    assert response.status_code == 303, response.content.decode()[:2000]
    assert _mappings(agent.participant) == {"urn:ocen:registry": "registry.audit registry.read"}
    claims = token_for(agent.participant.client, agent.client_secret, scope="registry.audit").json()
    assert "access_token" in claims


def test_a_grant_to_a_provider_not_yet_approved_needs_a_confirmation_in_the_admin(browser, agent, applied_lender):
    assert applied_lender.status == Status.APPLIED
    data = {"direction": "client", "other": applied_lender.pk, "scopes": "ocen.loan"}
    events = AuditEvent.objects.count()
    unconfirmed = browser.post(grant_url(agent.participant), data)
    assert unconfirmed.status_code == 400
    assert "not approved" in unconfirmed.content.decode()
    assert not ResourceMapping.objects.filter(provider=applied_lender).exists()
    assert AuditEvent.objects.count() == events
    confirmed = browser.post(grant_url(agent.participant), {**data, "confirm_unapproved_provider": "on"})
    assert confirmed.status_code == 303
    assert ResourceMapping.objects.get(provider=applied_lender).scopes == "ocen.loan"
    event = AuditEvent.objects.filter(action=AuditAction.MAPPING_GRANTED).latest("pk")
    assert event.after["confirmed_unapproved_provider"] is True


def test_a_grant_from_the_providers_page_while_it_is_not_approved_needs_a_confirmation(browser, agent,
                                                                                      applied_lender):
    data = {"direction": "provider", "other": agent.participant.pk, "scopes": "ocen.loan"}
    assert browser.post(grant_url(applied_lender), data).status_code == 400
    assert browser.post(grant_url(applied_lender), {**data, "confirm_unapproved_provider": "on"}).status_code == 303


def test_the_grant_service_needs_a_confirmation_for_a_provider_not_yet_approved(agent, applied_lender, admin_user):
    with pytest.raises(ValidationError, match="not approved"):
        services.mapping_grant(client=agent.participant, provider=applied_lender, scopes="ocen.loan",
                               acting_user=admin_user)
    assert not ResourceMapping.objects.filter(provider=applied_lender).exists()
    mapping = services.mapping_grant(client=agent.participant, provider=applied_lender, scopes="ocen.loan",
                                     acting_user=admin_user, confirm_unapproved_provider=True)
    assert mapping.scopes == "ocen.loan"


def test_grant_access_needs_its_flag_for_a_provider_not_yet_approved(agent, applied_lender):
    from io import StringIO

    from django.core.management import CommandError, call_command

    args = ["grant_access", str(agent.participant.participant_id), str(applied_lender.participant_id),
            "--scopes", "ocen.loan"]
    with pytest.raises(CommandError, match="not approved"):
        call_command(*args, stdout=StringIO())
    assert not ResourceMapping.objects.filter(provider=applied_lender).exists()
    call_command(*args, "--confirm-unapproved-provider", stdout=StringIO())
    assert ResourceMapping.objects.get(provider=applied_lender).scopes == "ocen.loan"
