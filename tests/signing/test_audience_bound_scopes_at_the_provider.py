"""A provider never accepts a scope that its own mapping did not grant: not from a
token the Auth Service issued for the caller's other providers, and not from a token
that names other providers too."""

import time
import uuid

import pytest

from authservice.conf import authservice_settings
from authservice.signing_keys import active_signer
from ocen_sdk.jws import sign_jwt
from registry import services
from tests.keymaterial import ec_key
from tests.signing.conftest import BODY

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def second_lender(net, settings):
    """lender2 granted the agent ocen.disburse; the net's lender (lender1) granted only ocen.loan
    and requires ocen.disburse, which it never granted."""
    services.scope_define(name="ocen.disburse", acting_user=None)
    lender2 = services.participant_onboard(org_name="Lender Two", role="LENDER", base_url="https://l2.example",
                                           public_key=ec_key().public_pem(), acting_user=None)
    services.mapping_grant(client=net.agent.participant, provider=lender2.participant, scopes="ocen.disburse",
                           acting_user=None)
    settings.OCEN_PROVIDER = {**net.provider_config, "REQUIRED_SCOPE": "ocen.disburse"}
    return lender2


def test_lender1_never_accepts_a_scope_only_lender2_granted(net, second_lender):
    issued = net.http.post(f"{net.base}/oauth2/token", data={"grant_type": "client_credentials"},
                           auth=(net.agent.client_id, net.agent.client_secret))
    if issued.status_code != 200:
        assert issued.status_code == 400 and issued.json()["error"] == "invalid_target", issued.text
        return
    response = net.raw_post(BODY, token=issued.json()["access_token"], signature=net.sign(BODY))
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "insufficient_scope"


def test_a_token_naming_another_provider_too_is_refused_by_the_guard(net, second_lender):
    """A token from before audiences were bound (still alive) is refused by the guard."""
    now = int(time.time())
    client_id = net.agent.client_id
    token = sign_jwt({
        "iss": authservice_settings.ISSUER, "sub": client_id, "client_id": client_id, "azp": client_id,
        "aud": [net.audience, second_lender.participant.audience, "urn:ocen:registry"],
        "scope": "ocen.disburse ocen.loan registry.read", "iat": now, "nbf": now, "exp": now + 300,
        "jti": uuid.uuid4().hex, "participantId": str(net.agent.participant.participant_id),
        "participant_role": "LOAN_AGENT", "org_id": str(net.agent.participant.organisation.org_id),
    }, active_signer(), typ="at+jwt")
    response = net.raw_post(BODY, token=token, signature=net.sign(BODY))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    assert response.json()["code"] == "ERR_TOKEN_AUDIENCE"


def test_the_reference_participants_token_without_resource_is_accepted(net):
    """OCEN's reference participant sends no resource and uses one provider."""
    issued = net.http.post(f"{net.base}/oauth2/token", data={"grant_type": "client_credentials"},
                           auth=(net.agent.client_id, net.agent.client_secret))
    assert issued.status_code == 200, issued.text
    response = net.raw_post(BODY, token=issued.json()["access_token"], signature=net.sign(BODY))
    assert response.status_code == 200, response.text


def test_a_provider_cannot_require_a_registry_scope(net):
    from ocen_sdk.provider import ProviderGuard

    with pytest.raises(ValueError, match="registry"):
        ProviderGuard({**net.provider_config, "REQUIRED_SCOPE": "registry.read"})
