"""Status changes end existing tokens everywhere the service checks them: a token
issued before a participant's tokens-not-before is refused at introspection and at
the registry API, and a token issued after it (even within the same second) is not."""

import pytest

from registry import services
from tests.conftest import FORM, basic, form


@pytest.fixture
def agent(onboard):
    creds, _ = onboard("LOAN_AGENT", "Agent Co")
    return creds


@pytest.fixture
def issue(token_for):
    def request(creds) -> str:
        response = token_for(creds.participant.client, creds.client_secret)
        assert response.status_code == 200, response.content
        return response.json()["access_token"]

    return request


@pytest.fixture
def accepted(client):
    """Is the token good both at introspection (asked by its own client) and at the registry API?"""

    def check(creds, token: str) -> tuple[bool, bool]:
        introspection = client.post("/oauth2/introspect", form({"token": token}), content_type=FORM,
                                    HTTP_AUTHORIZATION=basic(creds.client_id, creds.client_secret)).json()
        api = client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}")
        return introspection["active"], api.status_code == 200

    return check


def test_token_issued_before_suspension_stays_dead_after_reinstatement(agent, admin_user, issue, accepted):
    old = issue(agent)
    assert accepted(agent, old) == (True, True)
    services.participant_suspend(participant=agent.participant, reason="fraud check", acting_user=admin_user)
    services.participant_reinstate(participant=agent.participant, acting_user=admin_user)
    assert accepted(agent, old) == (False, False)
    assert accepted(agent, issue(agent)) == (True, True)
