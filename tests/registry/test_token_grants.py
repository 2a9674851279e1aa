"""The token endpoint grants audiences and scopes only from resource mappings, and
carries the participant's identity claims."""

import pytest
from django.core.exceptions import ValidationError
from joserfc import jwt
from joserfc.jwk import KeySet

from authservice.signing_keys import published_jwks
from registry import services
from tests.conftest import FORM, basic, form

# Grants name scopes of the catalogue.
pytestmark = pytest.mark.usefixtures("scope_catalogue")


def _claims(response):
    assert response.status_code == 200, response.content
    return jwt.decode(response.json()["access_token"], KeySet.import_key_set(published_jwks())).claims


@pytest.fixture
def agent_and_lender(onboard, admin_user):
    (agent, _), (lender, _) = onboard("LOAN_AGENT", "Agent Co"), onboard("LENDER", "Lender Bank")
    services.mapping_grant(client=agent.participant, provider=lender.participant, scopes="ocen.loan ocen.offer",
                           acting_user=admin_user)
    return agent, lender


def test_token_carries_participant_claims(onboard, token_for):
    creds, _ = onboard("LENDER")
    claims = _claims(token_for(creds.participant.client, creds.client_secret))
    assert claims["participantId"] == str(creds.participant.participant_id)
    assert claims["participant_role"] == "LENDER"
    assert claims["org_id"] == str(creds.participant.organisation.org_id)
    assert claims["aud"] == "urn:ocen:registry"


def test_default_token_covers_every_mapped_audience(agent_and_lender, token_for):
    agent, lender = agent_and_lender
    claims = _claims(token_for(agent.participant.client, agent.client_secret))
    assert set(claims["aud"]) == {"urn:ocen:registry", lender.participant.audience}
    assert set(claims["scope"].split()) == {"registry.read", "ocen.loan", "ocen.offer"}


def test_resource_narrows_the_audience_and_scopes(agent_and_lender, token_for):
    agent, lender = agent_and_lender
    claims = _claims(token_for(agent.participant.client, agent.client_secret, resource=lender.participant.audience))
    assert claims["aud"] == lender.participant.audience
    assert set(claims["scope"].split()) == {"ocen.loan", "ocen.offer"}


def test_scope_narrows_the_audience(agent_and_lender, token_for):
    agent, lender = agent_and_lender
    claims = _claims(token_for(agent.participant.client, agent.client_secret, scope="ocen.loan"))
    assert claims["aud"] == lender.participant.audience
    assert claims["scope"] == "ocen.loan"


def test_scope_outside_the_requested_resource_is_invalid_scope(agent_and_lender, token_for):
    agent, _ = agent_and_lender
    response = token_for(agent.participant.client, agent.client_secret, scope="ocen.loan",
                         resource="urn:ocen:registry")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_unmapped_provider_is_invalid_target(agent_and_lender, onboard, token_for):
    agent, _ = agent_and_lender
    stranger, _ = onboard("KYC_PARTNER")
    response = token_for(agent.participant.client, agent.client_secret, resource=stranger.participant.audience)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_the_reverse_direction_is_not_granted(agent_and_lender, token_for):
    agent, lender = agent_and_lender
    response = token_for(lender.participant.client, lender.client_secret, resource=agent.participant.audience)
    assert response.json()["error"] == "invalid_target"


def test_repeated_resource_parameters_are_allowed(agent_and_lender, client):
    agent, lender = agent_and_lender
    response = client.post("/oauth2/token", form({
        "grant_type": "client_credentials", "resource": ["urn:ocen:registry", lender.participant.audience],
    }), content_type=FORM, HTTP_AUTHORIZATION=basic(agent.client_id, agent.client_secret))
    assert set(_claims(response)["aud"]) == {"urn:ocen:registry", lender.participant.audience}


def test_suspended_participant_cannot_get_tokens_and_its_tokens_go_inactive(agent_and_lender, admin_user,
                                                                           token_for, client):
    agent, lender = agent_and_lender
    token = token_for(agent.participant.client, agent.client_secret).json()["access_token"]
    services.participant_suspend(participant=agent.participant, reason="investigation", acting_user=admin_user)
    assert token_for(agent.participant.client, agent.client_secret).status_code == 401
    introspection = client.post("/oauth2/introspect", form({"token": token}), content_type=FORM,
                                HTTP_AUTHORIZATION=basic(lender.client_id, lender.client_secret))
    assert introspection.json() == {"active": False}
    services.participant_reinstate(participant=agent.participant, acting_user=admin_user)
    assert token_for(agent.participant.client, agent.client_secret).status_code == 200


def test_suspended_provider_is_no_longer_an_audience(agent_and_lender, admin_user, token_for):
    agent, lender = agent_and_lender
    services.participant_suspend(participant=lender.participant, reason="r", acting_user=admin_user)
    claims = _claims(token_for(agent.participant.client, agent.client_secret))
    assert claims["aud"] == "urn:ocen:registry"


def test_provider_audience_may_introspect_the_token(agent_and_lender, onboard, client, token_for):
    agent, lender = agent_and_lender
    outsider, _ = onboard("KYC_PARTNER")
    token = token_for(agent.participant.client, agent.client_secret,
                      resource=lender.participant.audience).json()["access_token"]

    def introspect(creds):
        return client.post("/oauth2/introspect", form({"token": token}), content_type=FORM,
                           HTTP_AUTHORIZATION=basic(creds.client_id, creds.client_secret)).json()

    seen = introspect(lender)
    assert seen["active"] is True and seen["participantId"] == str(agent.participant.participant_id)
    assert introspect(outsider) == {"active": False}


def test_secret_rotation_stops_the_old_secret_at_once(onboard, admin_user, token_for):
    creds, _ = onboard()
    new = services.participant_rotate_secret(participant=creds.participant, acting_user=admin_user)
    assert token_for(creds.participant.client, creds.client_secret).status_code == 401
    assert token_for(creds.participant.client, new.client_secret).status_code == 200


def test_secret_rotation_with_a_grace_period_keeps_the_old_secret_briefly(onboard, admin_user, token_for):
    creds, _ = onboard()
    new = services.participant_rotate_secret(participant=creds.participant, acting_user=admin_user,
                                             grace_seconds=300)
    assert token_for(creds.participant.client, creds.client_secret).status_code == 200
    assert token_for(creds.participant.client, new.client_secret).status_code == 200
    with pytest.raises(ValidationError, match="previous secret still works until"):
        services.participant_rotate_secret(participant=creds.participant, acting_user=admin_user)
    assert token_for(creds.participant.client, creds.client_secret).status_code == 200
    again = services.participant_rotate_secret(participant=creds.participant, acting_user=admin_user, force=True)
    assert token_for(creds.participant.client, creds.client_secret).status_code == 401
    assert token_for(creds.participant.client, new.client_secret).status_code == 401
    assert token_for(creds.participant.client, again.client_secret).status_code == 200


def test_offboarded_client_cannot_get_token(onboard, admin_user, token_for):
    creds, _ = onboard()
    client = creds.participant.client
    services.participant_offboard(participant=creds.participant, reason="exit", acting_user=admin_user, four_eyes=False)
    response = token_for(client, creds.client_secret)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_offboarded_participants_tokens_are_inactive_at_once(agent_and_lender, admin_user, token_for, client):
    agent, lender = agent_and_lender
    token = token_for(agent.participant.client, agent.client_secret).json()["access_token"]

    def introspect():
        return client.post("/oauth2/introspect", form({"token": token}), content_type=FORM,
                           HTTP_AUTHORIZATION=basic(lender.client_id, lender.client_secret)).json()

    assert introspect()["active"] is True
    assert client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    services.participant_offboard(participant=agent.participant, reason="exit", acting_user=admin_user, four_eyes=False)
    assert introspect() == {"active": False}
    assert client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
