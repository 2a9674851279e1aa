"""POST /oauth2/token: client_credentials, client authentication, granted scopes, and
every malformed request refused with RFC 6749 JSON and nothing written."""

import base64
import json
from unittest import mock

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from joserfc import jwt
from joserfc.jwk import KeySet

from authservice.services import client_deactivate
from authservice.signing_keys import published_jwks
from tests.conftest import FORM, basic, form


def _segment(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_client_secret_basic_gets_rfc9068_jwt(make_client, token_for):
    oauth_client, secret = make_client("lender")
    response = token_for(oauth_client, secret)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "registry.read"
    assert response["Cache-Control"] == "no-store"

    header = _segment(body["access_token"], 0)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    claims = jwt.decode(body["access_token"], KeySet.import_key_set(published_jwks())).claims
    assert claims["iss"] == "http://127.0.0.1:8000"
    assert claims["sub"] == claims["client_id"] == claims["azp"] == oauth_client.client_id
    assert claims["aud"] == "urn:ocen:registry"
    assert claims["scope"] == "registry.read"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) == 32
    assert header["kid"] == published_jwks()["keys"][0]["kid"]


def test_one_lifetime_setting_drives_token_expiry_and_key_retirement(make_client, token_for, settings,
                                                                    signing_key):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ACCESS_TOKEN_TTL": 120, "LEEWAY": 5}
    oauth_client, secret = make_client()
    body = token_for(oauth_client, secret).json()
    claims = _segment(body["access_token"], 1)
    assert body["expires_in"] == 120
    assert claims["exp"] - claims["iat"] == 120
    from authservice.signing_keys import signing_key_activate, signing_key_prepublish

    signing_key_prepublish()
    signing_key_activate(force=True)
    signing_key.refresh_from_db()
    assert (signing_key.published_until - signing_key.retired_at).total_seconds() == 120 + 5


def test_issuing_a_token_writes_nothing_to_the_database(make_client, token_for):
    oauth_client, secret = make_client()
    token_for(oauth_client, secret)  # warm the client cache
    with CaptureQueriesContext(connection) as queries:
        assert token_for(oauth_client, secret).status_code == 200
    writes = [q["sql"] for q in queries if q["sql"].split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}]
    assert writes == []
    assert len(queries) == 1  # the client-generation check, which also reads the lockout state


def test_client_secret_post_is_accepted(client, make_client):
    oauth_client, secret = make_client()
    response = client.post("/oauth2/token", form({
        "grant_type": "client_credentials", "client_id": oauth_client.client_id, "client_secret": secret,
    }), content_type=FORM)
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "registry.read"


@override_settings(AUTHSERVICE={"SIGNING_ALG": "ES256"})
def test_es256_is_selectable(db, client):
    from authservice.services import client_create
    from authservice.signing_keys import signing_key_ensure

    key, _ = signing_key_ensure()
    assert key.alg == "ES256"
    oauth_client, secret = client_create(name="ec")
    response = client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                           HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    token = response.json()["access_token"]
    assert _segment(token, 0)["alg"] == "ES256"
    jwt.decode(token, KeySet.import_key_set(published_jwks()), algorithms=["ES256"])


def test_secret_is_256_bit_and_stored_hashed_with_the_fast_hasher(make_client):
    oauth_client, secret = make_client()
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    oauth_client.refresh_from_db()
    assert oauth_client.client_secret.startswith("client_secret_sha256$")
    assert secret not in oauth_client.client_secret


def test_unknown_client_costs_one_hash_like_a_wrong_secret(make_client, token_for):
    oauth_client, _ = make_client()
    with mock.patch("authservice.validator.check_password", wraps=__import__(
            "django.contrib.auth.hashers", fromlist=["check_password"]).check_password) as spy:
        assert token_for(oauth_client, "wrong").status_code == 401
        assert spy.call_count == 1
        oauth_client.client_id = "no-such-client"
        assert token_for(oauth_client, "wrong").status_code == 401
        assert spy.call_count == 2


@pytest.mark.parametrize("secret_kind", ["wrong", "unknown_client", "inactive"])
def test_bad_client_credentials_are_401_with_basic_challenge(make_client, token_for, secret_kind):
    oauth_client, secret = make_client()
    if secret_kind == "wrong":
        secret = "not-the-secret"
    elif secret_kind == "unknown_client":
        oauth_client.client_id = "unknown"
    else:
        client_deactivate(client=oauth_client)
    response = token_for(oauth_client, secret)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"]
    assert response["WWW-Authenticate"].startswith("Basic ")


def test_two_authentication_methods_at_once_are_refused(client, make_client):
    oauth_client, secret = make_client()
    response = client.post("/oauth2/token", form({
        "grant_type": "client_credentials", "client_id": oauth_client.client_id, "client_secret": secret,
    }), content_type=FORM, HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    assert response.status_code == 401


@pytest.mark.parametrize("header", [
    "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Basic " + base64.b64encode(b"a\x00b:c").decode(),
])
def test_malformed_basic_header_is_invalid_client_not_500(client, signing_key, header):
    response = client.post("/oauth2/token", "grant_type=client_credentials", content_type=FORM,
                           HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unsupported_grant_type(make_client, token_for):
    oauth_client, secret = make_client()
    response = token_for(oauth_client, secret, grant_type="password", username="u", password="p")
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_missing_grant_type_is_invalid_request(client, make_client):
    oauth_client, secret = make_client()
    response = client.post("/oauth2/token", "", content_type=FORM,
                           HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("scope", ["admin", "registry.read admin", "registry.write"])
def test_scope_not_granted_is_invalid_scope(make_client, token_for, scope):
    oauth_client, secret = make_client()
    response = token_for(oauth_client, secret, scope=scope)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_explicit_granted_scope_and_resource(make_client, token_for):
    oauth_client, secret = make_client()
    response = token_for(oauth_client, secret, scope="registry.read", resource="urn:ocen:registry")
    assert response.status_code == 200
    assert _segment(response.json()["access_token"], 1)["aud"] == "urn:ocen:registry"


def test_resource_not_granted_is_invalid_target(make_client, token_for):
    oauth_client, secret = make_client()
    response = token_for(oauth_client, secret, resource="https://evil.example/api")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_get_is_405(client, signing_key):
    response = client.get("/oauth2/token")
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(("body", "content_type", "status", "needle"), [
    ('{"grant_type": "client_credentials"}', "application/json", 400, "x-www-form-urlencoded"),
    ("grant_type=client_credentials", "text/plain", 400, "x-www-form-urlencoded"),
    ("grant_type=client_credentials&scope=" + "a" * 9000, FORM, 413, "larger"),
    (b"grant_type=client_credentials&scope=\xff\xfe", FORM, 400, "UTF-8"),
    ("grant_type=client_credentials&grant_type=client_credentials", FORM, 400, "repeated"),
    ("grant_type=client_credentials&scope=a%00b", FORM, 400, "NUL"),
    ("grant_type=client_credentials", FORM + "; charset=latin-1", 400, "UTF-8"),
])
def test_malformed_requests_are_4xx_json_and_write_nothing(client, make_client, body, content_type,
                                                           status, needle):
    oauth_client, secret = make_client()
    response = client.post("/oauth2/token", body, content_type=content_type,
                           HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    assert response.status_code == status
    payload = response.json()
    assert payload["error"] == "invalid_request"
    assert needle in payload["error_description"]


def test_parameters_in_the_url_are_refused(client, make_client):
    oauth_client, secret = make_client()
    response = client.post("/oauth2/token?client_secret=" + secret, "grant_type=client_credentials",
                           content_type=FORM, HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    assert response.status_code == 400


def test_secret_never_reaches_the_logs(make_client, token_for, caplog):
    oauth_client, secret = make_client()
    with caplog.at_level("DEBUG"):
        token_for(oauth_client, secret)
        token_for(oauth_client, "wrong-" + secret)
    assert secret not in caplog.text


@pytest.mark.parametrize("field", ["META", "headers", "GET"])
def test_a_form_field_named_like_a_request_attribute_changes_nothing(client, make_client, field):
    """oauthlib's request answers any attribute name from the form; a field called META
    once reached the Basic-credentials reader as a string (500)."""
    oauth_client, secret = make_client()
    ok = client.post("/oauth2/token", f"grant_type=client_credentials&{field}=x",
                     content_type="application/x-www-form-urlencoded",
                     HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    assert ok.status_code == 200, ok.content
    wrong = client.post("/oauth2/token", f"grant_type=client_credentials&{field}=x",
                        content_type="application/x-www-form-urlencoded",
                        HTTP_AUTHORIZATION=basic(oauth_client.client_id, "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
