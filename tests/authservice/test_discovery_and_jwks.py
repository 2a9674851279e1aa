"""Discovery metadata and JWKS, used the way a provider does: over HTTP, with an
independent JOSE library, knowing nothing but the issuer URL."""

import httpx
import pytest
from django.test import override_settings
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from authservice.services import client_create

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


@pytest.fixture
def issuer(live_server, settings):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ISSUER": live_server.url}
    return live_server.url


def test_token_verifies_with_joserfc_from_discovery_and_jwks_alone(issuer, transactional_db):
    from authservice.signing_keys import signing_key_ensure

    signing_key_ensure()
    oauth_client, secret = client_create(name="provider-test")

    with httpx.Client(timeout=10) as http:
        metadata = http.get(f"{issuer}/.well-known/openid-configuration").json()
        assert metadata["issuer"] == issuer
        token_response = http.post(metadata["token_endpoint"], data={"grant_type": "client_credentials"},
                                   auth=(oauth_client.client_id, secret))
        assert token_response.status_code == 200, token_response.text
        jwks = http.get(metadata["jwks_uri"]).json()

    access_token = token_response.json()["access_token"]
    token = jwt.decode(access_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert token.header["typ"] == "at+jwt"
    JWTClaimsRegistry(
        iss={"essential": True, "value": metadata["issuer"]},
        aud={"essential": True, "value": "urn:ocen:registry"},
        exp={"essential": True},
        client_id={"essential": True, "value": oauth_client.client_id},
    ).validate(token.claims)


def test_metadata_names_every_endpoint_and_capability(client, signing_key):
    metadata = client.get("/.well-known/openid-configuration").json()
    assert metadata["issuer"] == "http://127.0.0.1:8000"
    assert metadata["token_endpoint"] == "http://127.0.0.1:8000/oauth2/token"
    assert metadata["jwks_uri"] == "http://127.0.0.1:8000/oauth2/jwks"
    assert metadata["introspection_endpoint"] == "http://127.0.0.1:8000/oauth2/introspect"
    assert metadata["revocation_endpoint"] == "http://127.0.0.1:8000/oauth2/revoke"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert set(metadata["token_endpoint_auth_methods_supported"]) >= {
        "client_secret_basic", "client_secret_post"}
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    assert client.get("/.well-known/oauth-authorization-server").json() == metadata


@override_settings(AUTHSERVICE={"ISSUER": "http://127.0.0.1:8000/realms/ocen/"})
def test_issuer_with_a_path_serves_metadata_under_that_path(client, signing_key):
    oidc = client.get("/realms/ocen/.well-known/openid-configuration")
    assert oidc.status_code == 200
    assert oidc.json()["issuer"] == "http://127.0.0.1:8000/realms/ocen"
    rfc8414 = client.get("/.well-known/oauth-authorization-server/realms/ocen")
    assert rfc8414.status_code == 200
    assert rfc8414.json() == oidc.json()
    assert client.get("/.well-known/openid-configuration").status_code == 404
    assert client.get("/realms/other/.well-known/openid-configuration").status_code == 404
    assert client.get("/.well-known/oauth-authorization-server").status_code == 404


@pytest.mark.parametrize("path", ["/oauth2/jwks", "/.well-known/jwks.json"])
def test_jwks_publishes_public_keys_only_with_cache_control(client, signing_key, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=300"
    (key,) = response.json()["keys"]
    assert key["kid"] == signing_key.kid
    assert key["use"] == "sig"
    assert key["alg"] == "RS256"
    assert key["kty"] == "RSA"
    assert not PRIVATE_MEMBERS & set(key)


def test_jwks_refuses_post(client, signing_key):
    assert client.post("/oauth2/jwks").status_code == 405


def test_unknown_path_is_json_404(client, db):
    response = client.get("/no/such/thing")
    assert response.status_code == 404
