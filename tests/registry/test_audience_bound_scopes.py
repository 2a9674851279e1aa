"""A scope granted at one provider is never usable at another: a token names at most
one provider, and carries only scopes granted there (plus the registry's own)."""

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from authservice.signing_keys import published_jwks
from registry import services
from registry.models import Scope
from tests.conftest import FORM, basic, form

pytestmark = pytest.mark.usefixtures("scope_catalogue")


def _claims(response):
    assert response.status_code == 200, response.content
    return jwt.decode(response.json()["access_token"], KeySet.import_key_set(published_jwks())).claims


def _granted_at_each(claims, grants: dict[str, set[str]]) -> bool:
    """Every scope of the token (but the registry's) was granted at every provider it names."""
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    scopes = set(claims["scope"].split()) - {"registry.read"}
    return all(scopes <= grants[aud] for aud in audiences if aud != "urn:ocen:registry")


@pytest.fixture
def agent_with_two_lenders(onboard, admin_user):
    Scope.objects.get_or_create(name="ocen.disburse")
    agent, _ = onboard("LOAN_AGENT", "Agent Co")
    lender1, _ = onboard("LENDER", "Lender One")
    lender2, _ = onboard("LENDER", "Lender Two")
    services.mapping_grant(client=agent.participant, provider=lender1.participant, scopes="ocen.loan",
                           acting_user=admin_user)
    services.mapping_grant(client=agent.participant, provider=lender2.participant, scopes="ocen.disburse",
                           acting_user=admin_user)
    grants = {lender1.participant.audience: {"ocen.loan"}, lender2.participant.audience: {"ocen.disburse"}}
    return agent, lender1, lender2, grants


def test_a_token_without_resource_never_carries_another_providers_scope(agent_with_two_lenders, token_for):
    agent, _, _, grants = agent_with_two_lenders
    response = token_for(agent.participant.client, agent.client_secret)
    if response.status_code == 200:
        assert _granted_at_each(_claims(response), grants), _claims(response)
    else:
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_target"
        assert "resource" in response.json()["error_description"]


def test_a_token_for_two_providers_by_resource_is_refused(agent_with_two_lenders, client):
    agent, lender1, lender2, _ = agent_with_two_lenders
    response = client.post("/oauth2/token", form({
        "grant_type": "client_credentials", "resource": [lender1.participant.audience, lender2.participant.audience],
    }), content_type=FORM, HTTP_AUTHORIZATION=basic(agent.client_id, agent.client_secret))
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_target"


def test_a_scope_granted_at_both_providers_still_gets_one_provider_per_token(agent_with_two_lenders, admin_user,
                                                                              token_for):
    agent, _, lender2, _ = agent_with_two_lenders
    services.mapping_grant(client=agent.participant, provider=lender2.participant, scopes="ocen.loan",
                           acting_user=admin_user)
    refused = token_for(agent.participant.client, agent.client_secret, scope="ocen.loan")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"
    claims = _claims(token_for(agent.participant.client, agent.client_secret, scope="ocen.loan",
                               resource=lender2.participant.audience))
    assert claims["aud"] == lender2.participant.audience and claims["scope"] == "ocen.loan"


def test_each_provider_gets_its_own_token_by_resource(agent_with_two_lenders, token_for):
    agent, lender1, lender2, _ = agent_with_two_lenders
    first = _claims(token_for(agent.participant.client, agent.client_secret, resource=lender1.participant.audience))
    second = _claims(token_for(agent.participant.client, agent.client_secret, resource=lender2.participant.audience))
    assert (first["aud"], first["scope"]) == (lender1.participant.audience, "ocen.loan")
    assert (second["aud"], second["scope"]) == (lender2.participant.audience, "ocen.disburse")


def test_a_scope_narrows_a_client_of_two_providers_to_the_one_that_granted_it(agent_with_two_lenders, token_for):
    agent, lender1, _, _ = agent_with_two_lenders
    claims = _claims(token_for(agent.participant.client, agent.client_secret, scope="ocen.loan registry.read"))
    assert set(claims["aud"]) == {lender1.participant.audience, "urn:ocen:registry"}
    assert set(claims["scope"].split()) == {"ocen.loan", "registry.read"}


def test_one_provider_and_the_registry_still_need_no_resource(onboard, admin_user, token_for):
    """What OCEN's reference participant does: no resource, one provider."""
    agent, _ = onboard("LOAN_AGENT")
    lender, _ = onboard("LENDER")
    services.mapping_grant(client=agent.participant, provider=lender.participant, scopes="ocen.loan",
                           acting_user=admin_user)
    claims = _claims(token_for(agent.participant.client, agent.client_secret))
    assert set(claims["aud"]) == {lender.participant.audience, "urn:ocen:registry"}
    assert set(claims["scope"].split()) == {"ocen.loan", "registry.read"}


def test_mappings_from_before_the_vetting_grant_nothing_out_of_place(onboard, token_for):
    """A provider's scope in a registry mapping, the registry's scope in a provider mapping
    (rows written before grants were vetted): neither is granted."""
    from registry.invalidation import grants_changed
    from registry.models import ResourceMapping

    agent, _ = onboard("LOAN_AGENT")
    lender, _ = onboard("LENDER")
    ResourceMapping.objects.filter(client=agent.participant, provider=None).update(scopes="registry.read ocen.loan")
    ResourceMapping.objects.create(client=agent.participant, provider=lender.participant,
                                   scopes="ocen.offer registry.audit")
    grants_changed(agent.participant)
    for scope, resource in [("ocen.loan", "urn:ocen:registry"), ("registry.audit", lender.participant.audience)]:
        refused = token_for(agent.participant.client, agent.client_secret, scope=scope, resource=resource)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope", (scope, resource)
    claims = _claims(token_for(agent.participant.client, agent.client_secret))
    assert set(claims["scope"].split()) == {"registry.read", "ocen.offer"}
