"""The sample flow's parts against a live server: the SDK, the provider middleware,
private_key_jwt, signed registry responses, key rotation and offboarding."""

import json
import threading
import time
import uuid

import httpx
import pytest
from django.core.management import call_command

from authservice.signing_keys import key_cache
from ocen_sdk.client import ResponseSignatureError
from ocen_sdk.http import SIGNATURE_HEADER
from ocen_sdk.jws import sign_compact
from ocen_sdk.key_loading import thumbprint
from ocen_sdk.remote import ASSERTION_TYPE, RegistryClient, RegistryError, ServiceKeys
from registry import services
from tests.keymaterial import ec_key
from tests.signing.conftest import BODY

pytestmark = pytest.mark.django_db(transaction=True)




def test_sdk_call_is_verified_both_ways(net):
    response = net.http.post(net.url, content=BODY, auth=net.auth())
    assert response.status_code == 200, response.text
    assert response.json()["requestedBy"] == str(net.agent.participant.participant_id)
    assert response.headers[SIGNATURE_HEADER]


def test_bodyless_request_signs_the_request_target(net):
    response = net.http.get(net.url + "?page=2&size=10", auth=net.auth())
    assert response.status_code == 200, response.text
    token = net.tokens().get()
    signature = net.sign(method="GET", target="/lender/loan-offers?page=1")
    headers = {"Authorization": f"Bearer {token}", SIGNATURE_HEADER: signature}
    refused = net.http.get(net.url + "?page=2", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_signature"


def test_the_signature_header_alias_is_accepted(net):
    signature = net.sign(BODY)
    response = net.raw_post(BODY, token=net.tokens().get(), signature=signature, header="Signature")
    assert response.status_code == 200


@pytest.mark.parametrize("case", ["no_token", "bad_token", "wrong_audience", "no_signature", "tampered", "wrong_key"])
def test_provider_refusals_name_what_failed(net, case):
    token = net.tokens().get()
    signature = net.sign(BODY)
    body = BODY
    if case == "no_token":
        token = ""
    elif case == "bad_token":
        token = token[:-4] + "AAAA"
    elif case == "wrong_audience":
        token = net.tokens(resource="urn:ocen:registry").get()
    elif case == "no_signature":
        signature = None
    elif case == "tampered":
        body = BODY.replace(b"1000", b"9000")
    elif case == "wrong_key":
        signature = net.sign(BODY, key=ec_key().private_key)
    response = net.raw_post(body, token=token, signature=signature)
    assert response.status_code == 401
    expected = "invalid_token" if case in {"no_token", "bad_token", "wrong_audience"} else "invalid_signature"
    assert response.json()["error"] == expected
    assert response.json()["code"]
    assert response.headers[SIGNATURE_HEADER]  # even refusals are signed by the provider


def test_sdk_refuses_an_unsigned_response(net):
    auth = net.auth()
    with pytest.raises(ResponseSignatureError, match="not signed"):
        net.http.get(f"{net.base}/healthz", auth=auth)


def test_offboarded_participants_signed_request_is_refused(net):
    tokens = net.tokens()
    token = tokens.get()
    assert net.raw_post(BODY, token=token, signature=net.sign(BODY)).status_code == 200
    services.participant_offboard(participant=net.agent.participant, reason="exit", acting_user=None, four_eyes=False)
    refused = net.raw_post(BODY, token=token, signature=net.sign(BODY))
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    assert refused.json()["code"] == "ERR_CALLER_UNKNOWN"


def test_service_key_rotation_is_absorbed_without_restart(net):
    auth = net.auth()
    assert net.http.post(net.url, content=BODY, auth=auth).status_code == 200
    call_command("rotate_signing_key", verbosity=0)
    call_command("rotate_signing_key", "--activate", "--force", verbosity=0)
    key_cache.clear()
    auth.tokens.invalidate()  # the next token is signed by the new key, unknown to the provider's cache
    response = net.http.post(net.url, content=BODY, auth=auth)
    assert response.status_code == 200, response.text


def test_private_key_jwt_gets_a_token_and_a_replay_is_refused(net):
    tokens = net.tokens(client_secret=None, private_key=net.agent_key, kid=thumbprint(net.agent_key))
    assert net.http.post(net.url, content=BODY, auth=net.auth(tokens)).status_code == 200
    assertion = tokens.client_assertion()
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion}
    assert net.http.post(f"{net.base}/oauth2/token", data=data).status_code == 200
    replay = net.http.post(f"{net.base}/oauth2/token", data=data)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


@pytest.mark.parametrize("change", ["aud", "expired", "too_long", "iss_sub", "no_jti", "unregistered_key",
                                    "secret_too", "wrong_type"])
def test_bad_client_assertions_are_refused(net, change):
    now = int(time.time())
    client_id = net.agent.client_id
    claims = {"iss": client_id, "sub": client_id, "aud": f"{net.base}/oauth2/token", "iat": now, "exp": now + 60,
              "jti": uuid.uuid4().hex}
    key, kid = net.agent_key, thumbprint(net.agent_key)
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    if change == "aud":
        claims["aud"] = "https://elsewhere.example/token"
    elif change == "expired":
        claims.update(iat=now - 600, exp=now - 300)
    elif change == "too_long":
        claims["exp"] = now + 3600
    elif change == "iss_sub":
        claims["sub"] = net.lender.client_id
    elif change == "no_jti":
        del claims["jti"]
    elif change == "unregistered_key":
        key = ec_key().private_key
    elif change == "secret_too":
        data["client_secret"] = net.agent.client_secret
    elif change == "wrong_type":
        data["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    data["client_assertion"] = sign_compact(json.dumps(claims).encode(), key, alg="ES256", kid=kid)
    response = net.http.post(f"{net.base}/oauth2/token", data=data)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_discovery_advertises_private_key_jwt(net):
    metadata = net.http.get(f"{net.base}/.well-known/openid-configuration").json()
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert "ES256" in metadata["token_endpoint_auth_signing_alg_values_supported"]


def test_registry_responses_are_signed_by_the_service(net):
    registry = RegistryClient(net.base, net.tokens(resource="urn:ocen:registry"), http=net.http,
                              service_keys=ServiceKeys(net.base, http=net.http))
    keys = registry.participant_keys(str(net.lender.participant.participant_id))
    assert [key.kid for key in keys] == [thumbprint(net.lender_key)]

    class Tampering(httpx.BaseTransport):
        def handle_request(self, request):
            response = httpx.HTTPTransport().handle_request(request)
            response.read()
            body = response.content.replace(b'"kty"', b'"kty" ')
            return httpx.Response(response.status_code, headers=response.headers, content=body)

    tampered = RegistryClient(net.base, net.tokens(resource="urn:ocen:registry"), http=httpx.Client(
        transport=Tampering()), service_keys=ServiceKeys(net.base, http=net.http))
    with pytest.raises(RegistryError, match="signature is invalid"):
        tampered.participant_keys(str(net.lender.participant.participant_id))


def test_registry_client_revalidates_with_etags(net):
    registry = RegistryClient(net.base, net.tokens(resource="urn:ocen:registry"), http=net.http, revalidate_after=0)
    participant_id = str(net.lender.participant.participant_id)
    first = registry.participant_keys(participant_id)
    second = registry.participant_keys(participant_id)
    assert first == second and registry.requests == 2


def test_token_manager_refreshes_once_under_concurrency(net):
    tokens = net.tokens()
    results = []
    threads = [threading.Thread(target=lambda: results.append(tokens.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tokens.fetches == 1 and len(set(results)) == 1
