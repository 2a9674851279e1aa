"""Nothing secret in any log: a full flow with DEBUG logging on, then every captured
line is searched for client secrets, access tokens, assertions and private keys."""

import logging

import pytest
from django.conf import settings as django_settings

from ocen_sdk.key_loading import thumbprint
from ocen_sdk.remote import ASSERTION_TYPE, RegistryClient, ServiceKeys
from registry import services
from tests.signing.conftest import BODY, _pem

pytestmark = pytest.mark.django_db(transaction=True)
DEBUG_LOGGERS = ["", "django", "django.request", "django.server", "authservice", "registry", "ocen_sdk", "httpx",
                 "httpcore", "axes"]


def test_no_secret_token_assertion_or_private_key_in_any_log_line(net, caplog, capfd):
    for name in DEBUG_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    secrets = [net.agent.client_secret, net.lender.client_secret, _pem(net.agent_key), _pem(net.lender_key)]

    secret_tokens = net.tokens()
    secrets.append(secret_tokens.get())  # client_secret_basic
    assertion_tokens = net.tokens(client_secret=None, private_key=net.agent_key, kid=thumbprint(net.agent_key))
    secrets.append(assertion_tokens.get())  # private_key_jwt
    assertion = assertion_tokens.client_assertion()
    secrets.append(assertion)
    response = net.http.post(f"{net.base}/oauth2/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})
    secrets.append(response.json()["access_token"])
    replay = net.http.post(f"{net.base}/oauth2/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})
    assert replay.status_code == 401  # a refusal is logged too: still without the assertion

    registry = RegistryClient(net.base, net.tokens(resource="urn:ocen:registry"), http=net.http,
                              service_keys=ServiceKeys(net.base, http=net.http))
    assert registry.participant(str(net.lender.participant.participant_id)) is not None
    secrets.append(registry.tokens.get())
    assert net.http.post(net.url, content=BODY, auth=net.auth(secret_tokens)).status_code == 200
    wrong = net.http.post(f"{net.base}/oauth2/token", data={"grant_type": "client_credentials"},
                          auth=(net.agent.client_id, net.agent.client_secret + "x"))
    assert wrong.status_code == 401

    rotated = services.participant_rotate_secret(participant=net.agent.participant, acting_user=None)
    secrets.append(rotated.client_secret)
    fresh = net.tokens(client_secret=rotated.client_secret)
    secrets.append(fresh.get())

    captured = capfd.readouterr()
    output = caplog.text + captured.out + captured.err
    assert "POST /oauth2/token" in output or "oauth2/token" in output  # the flow was logged at all
    for secret in secrets:
        for fragment in {secret, secret.strip()[:40], secret.split(".")[-1] if "." in secret else secret}:
            assert fragment not in output, f"a secret leaked into the logs: {fragment[:12]}…"


def test_oauthlib_which_logs_request_bodies_at_debug_is_held_at_warning():
    loggers = django_settings.LOGGING["loggers"]
    assert loggers["oauthlib"]["level"] == "WARNING"
    assert loggers["oauth2_provider"]["level"] == "WARNING"
