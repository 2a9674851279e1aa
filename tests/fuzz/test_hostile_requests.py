"""Hostile requests at every unauthenticated entry point: a clear 4xx, never a 500."""

import base64
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocen_sdk.jws import sign_compact
from ocen_sdk.remote import ASSERTION_TYPE
from tests.conftest import FORM, form

NESTED = base64.urlsafe_b64encode(b"[" * 1500).rstrip(b"=").decode()
NESTED_TOKEN = f"{NESTED}.{NESTED}.AAAA"
NON_ASCII_BASIC = "Basic \xff\xfe\x00\xe9t\xe9"


@pytest.fixture
def participant(onboard_for_fuzz):
    return onboard_for_fuzz


@pytest.fixture
def onboard_for_fuzz(db, signing_key):
    from registry import services
    from tests.keymaterial import ec_key

    key = ec_key()
    credentials = services.participant_onboard(org_name="Fuzz Bank", role="LENDER", base_url="https://fuzz.example",
                                               public_key=key.public_pem(), acting_user=None)
    return credentials, key


def _assert_4xx(response):
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"])
def test_non_ascii_basic_credentials_are_a_401(client, signing_key, path):
    response = client.post(path, form({"grant_type": "client_credentials", "token": "x"}), content_type=FORM,
                           HTTP_AUTHORIZATION=NON_ASCII_BASIC)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
def test_a_nested_token_at_introspection_and_revocation_is_not_an_error(client, participant, path):
    credentials, _ = participant
    from tests.conftest import basic

    response = client.post(path, form({"token": NESTED_TOKEN}), content_type=FORM,
                           HTTP_AUTHORIZATION=basic(credentials.client_id, credentials.client_secret))
    assert response.status_code == 200
    if path == "/oauth2/introspect":
        assert response.json() == {"active": False}


@pytest.mark.parametrize("assertion", [NESTED_TOKEN, f"{NESTED}.e30.AAAA", "a.b", "x" * 20000, "..", "é.é.é"])
def test_a_malformed_client_assertion_is_a_401(client, signing_key, assertion):
    response = client.post("/oauth2/token", form({"grant_type": "client_credentials",
                                                  "client_assertion_type": ASSERTION_TYPE,
                                                  "client_assertion": assertion}), content_type=FORM)
    _assert_4xx(response)
    assert response.json()["error"] in {"invalid_client", "invalid_request"}


@pytest.mark.parametrize("change", [{"exp": float("nan")}, {"aud": [{}]}, {"nbf": "soon"}, {"exp": float("inf")},
                                    {"iat": True}, {"jti": ["x"]}, {"exp": 10**400}])
def test_a_correctly_signed_assertion_with_bad_claim_types_is_a_401(client, participant, change):
    credentials, key = participant
    now = int(time.time())
    claims = {"iss": credentials.client_id, "sub": credentials.client_id, "aud": "http://127.0.0.1:8000/oauth2/token",
              "iat": now, "exp": now + 60, "jti": "j-1", **change}
    payload = json.dumps(claims, allow_nan=True).encode() if change != {"exp": 10**400} else (
        json.dumps({**claims, "exp": 0}).replace('"exp": 0', '"exp": ' + "9" * 400).encode())
    assertion = sign_compact(payload, key.private_key, alg="ES256", kid=key.thumbprint())
    response = client.post("/oauth2/token", form({"grant_type": "client_credentials",
                                                  "client_assertion_type": ASSERTION_TYPE,
                                                  "client_assertion": assertion}), content_type=FORM)
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("path", ["/registry/v1/participants", "/registry/v1/participants/"
                                  "00000000-0000-0000-0000-000000000000",
                                  "/service/participant-roles/00000000-0000-0000-0000-000000000000"])
@pytest.mark.parametrize("authorization", [f"Bearer {NESTED_TOKEN}", "Bearer \xff\xfe", "Bearer a.b.c.d",
                                           "Bearer " + "A" * 20000, "Basic x"])
def test_hostile_bearer_tokens_at_the_registry_are_a_401(client, signing_key, path, authorization):
    response = client.get(path, HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401, response.content


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=st.one_of(st.binary(max_size=300), st.dictionaries(
    st.sampled_from(["grant_type", "scope", "resource", "client_id", "client_secret", "client_assertion",
                     "client_assertion_type", "token", "token_type_hint"]),
    st.text(max_size=60), max_size=6).map(lambda d: form(d).encode())),
    authorization=st.one_of(st.none(), st.text(max_size=60)),
    path=st.sampled_from(["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"]))
def test_any_form_body_and_authorization_at_the_oauth_endpoints_is_never_a_5xx(client, signing_key, body,
                                                                               authorization, path):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    try:
        response = client.post(path, body, content_type=FORM, **extra)
    except UnicodeEncodeError:
        return  # the test client itself cannot send this header; a real WSGI server passes latin-1 text
    assert response.status_code < 500, (response.status_code, response.content[:300])
    assert "error" in response.json() or response.status_code == 200


@pytest.mark.parametrize("query", ["status=", "status=NOPE", "search=%00", "page=0", "page=99999", "page_size=1000",
                                   "organisation=not-a-uuid", "role=", "page=1e3", "search=" + "x" * 500])
def test_bad_list_filters_are_a_4xx(client, participant, query):
    credentials, _ = participant
    token = client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                        HTTP_AUTHORIZATION=__import__("tests.conftest", fromlist=["basic"]).basic(
                            credentials.client_id, credentials.client_secret)).json()["access_token"]
    response = client.get(f"/registry/v1/participants?{query}", HTTP_AUTHORIZATION=f"Bearer {token}")
    _assert_4xx(response)
