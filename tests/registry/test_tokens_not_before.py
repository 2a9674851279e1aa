"""Status changes end existing tokens everywhere the service checks them: a token
issued before a participant's tokens-not-before is refused at introspection and at
the registry API, and a token issued after it (even within the same second) is not."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from ocen_sdk.jws import peek_claims
from registry import services
from registry.models import AuditAction, AuditEvent, Participant
from tests.conftest import FORM, basic, form


@pytest.fixture
def agent(onboard):
    creds, _ = onboard("LOAN_AGENT", "Agent Co")
    return creds


@pytest.fixture
def issue(token_for):
    def request(creds, secret: str | None = None) -> str:
        response = token_for(creds.participant.client, secret or creds.client_secret)
        assert response.status_code == 200, response.content
        return response.json()["access_token"]

    return request


@pytest.fixture
def accepted(client):
    """Is the token good at introspection (asked by its own client) and at the registry API?"""

    def check(creds, token: str, secret: str | None = None) -> tuple[bool, bool]:
        auth = basic(creds.client_id, secret or creds.client_secret)
        introspection = client.post("/oauth2/introspect", form({"token": token}), content_type=FORM,
                                    HTTP_AUTHORIZATION=auth).json()
        api = client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}")
        return introspection["active"], api.status_code == 200

    return check


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _tokens_not_before(creds) -> int:
    participant = Participant.objects.select_related("client").get(pk=creds.participant.pk)
    return int(participant.client.tokens_not_before.timestamp())


def test_token_issued_before_suspension_stays_dead_after_reinstatement(agent, admin_user, issue, accepted):
    old = issue(agent)
    assert accepted(agent, old) == (True, True)
    services.participant_suspend(participant=agent.participant, reason="fraud check", acting_user=admin_user)
    services.participant_reinstate(participant=agent.participant, acting_user=admin_user)
    assert accepted(agent, old) == (False, False)
    assert accepted(agent, issue(agent)) == (True, True)


def test_revoke_tokens_command_ends_earlier_tokens_not_one_issued_after_in_the_same_second(
        agent, issue, accepted, clock):
    clock.at(0.2)
    before = issue(agent)
    clock.at(0.5)
    out = _call("revoke_tokens", str(agent.participant.participant_id), "--reason", "token leaked")
    clock.at(0.8)
    after = issue(agent)
    cutoff = _tokens_not_before(agent)
    assert peek_claims(before)["iat"] == clock.second < cutoff == clock.second + 1 == peek_claims(after)["iat"]
    assert str(agent.participant.participant_id) in out
    assert peek_claims(after)["nbf"] == cutoff and peek_claims(after)["exp"] == cutoff + 900
    assert accepted(agent, before) == (False, False)
    assert accepted(agent, after) == (True, True)


def test_admin_revoke_all_tokens_ends_earlier_tokens_not_one_issued_after(agent, admin_user, issue, accepted,
                                                                          clock, audit):
    browser = Client()
    browser.force_login(admin_user)
    url = reverse("admin:registry_participant_workflow", args=[agent.participant.pk, "revoke-tokens"])
    page = browser.get(url).content.decode()
    assert "Revoke all tokens now" in page and "STATUS_MAX_AGE" in page
    clock.at(0.1)
    before = issue(agent)
    clock.at(0.6)
    assert browser.post(url, {"reason": "  "}).status_code == 400
    assert browser.post(url, {"reason": "laptop stolen"}).status_code == 303
    clock.at(0.9)
    after = issue(agent)
    assert accepted(agent, before) == (False, False)
    assert accepted(agent, after) == (True, True)
    assert AuditEvent.objects.filter(action=AuditAction.TOKENS_REVOKED).get().actor == admin_user


def test_rotate_client_secret_revoke_tokens_ends_old_tokens_and_keeps_the_json_contract(agent, issue, accepted):
    old = issue(agent)
    out = _call("rotate_client_secret", str(agent.participant.participant_id), "--revoke-tokens", "--json")
    rotated = json.loads(out)
    assert set(rotated) == {"participant_id", "client_id", "client_secret"}
    assert accepted(agent, old, rotated["client_secret"]) == (False, False)
    assert accepted(agent, issue(agent, rotated["client_secret"]), rotated["client_secret"]) == (True, True)


def test_rotate_client_secret_without_the_flag_keeps_old_tokens(agent, issue, accepted):
    old = issue(agent)
    rotated = json.loads(_call("rotate_client_secret", str(agent.participant.participant_id), "--json"))
    assert accepted(agent, old, rotated["client_secret"]) == (True, True)


def test_admin_rotation_can_end_the_old_secrets_tokens(agent, admin_user, issue, accepted):
    browser = Client()
    browser.force_login(admin_user)
    url = reverse("admin:registry_participant_workflow", args=[agent.participant.pk, "rotate-secret"])
    assert "Also end every token issued with the old secret" in browser.get(url).content.decode()
    old = issue(agent)
    refused = browser.post(url, {"grace_seconds": "60", "revoke_tokens": "on"})
    assert refused.status_code == 400 and "grace period" in refused.content.decode()
    assert accepted(agent, old) == (True, True)
    page = browser.post(url, {"grace_seconds": "0", "revoke_tokens": "on"}, follow=True).content.decode()
    secret = page.split('id="client-secret">')[1].split("<")[0]
    assert accepted(agent, old, secret) == (False, False)
    assert AuditEvent.objects.filter(action=AuditAction.CLIENT_SECRET_ROTATED).get().after["revoke_tokens"] is True


def test_participant_page_shows_tokens_not_before(agent, admin_user):
    browser = Client()
    browser.force_login(admin_user)
    cutoff = services.participant_revoke_tokens(participant=agent.participant, reason="leak", acting_user=admin_user)
    page = browser.get(reverse("admin:registry_participant_change", args=[agent.participant.pk])).content.decode()
    assert cutoff.strftime("%Y-%m-%dT%H:%M:%SZ") in page
