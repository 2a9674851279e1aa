"""RFC 7662 introspection and RFC 7009 revocation, restricted to the token's owner."""

import pytest

from authservice.models import RevokedToken
from authservice.services import client_deactivate
from tests.conftest import FORM, basic, form


@pytest.fixture
def owner(make_client):
    return make_client("owner")


@pytest.fixture
def stranger(make_client):
    return make_client("stranger")


def _introspect(client, caller, token):
    oauth_client, secret = caller
    return client.post("/oauth2/introspect", form({"token": token}), content_type=FORM,
                       HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))


def _revoke(client, caller, token):
    oauth_client, secret = caller
    return client.post("/oauth2/revoke", form({"token": token, "token_type_hint": "access_token"}),
                       content_type=FORM, HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))


@pytest.fixture
def token(owner, token_for):
    return token_for(*owner).json()["access_token"]


def test_owner_sees_its_active_token(client, owner, token):
    response = _introspect(client, owner, token)
    assert response.status_code == 200
    body = response.json()
    assert body["active"] is True
    assert body["client_id"] == owner[0].client_id
    assert body["scope"] == "registry.read"
    assert body["token_type"] == "Bearer"
    assert response["Cache-Control"] == "no-store"


def test_another_client_cannot_introspect(client, stranger, token):
    assert _introspect(client, stranger, token).json() == {"active": False}


def test_revoked_token_introspects_inactive(client, owner, token):
    assert _revoke(client, owner, token).status_code == 200
    assert _introspect(client, owner, token).json() == {"active": False}
    assert RevokedToken.objects.get().client_id == owner[0].client_id
    assert _revoke(client, owner, token).status_code == 200  # twice is fine
    assert RevokedToken.objects.count() == 1


def test_another_client_cannot_revoke(client, owner, stranger, token):
    assert _revoke(client, stranger, token).status_code == 200  # RFC 7009: no disclosure
    assert _introspect(client, owner, token).json()["active"] is True
    assert not RevokedToken.objects.exists()


def test_deactivated_clients_tokens_are_inactive_at_once(client, owner, stranger, token):
    client_deactivate(client=owner[0])
    assert _introspect(client, stranger, token).json() == {"active": False}


def test_expired_token_is_inactive(client, owner, token_for, settings):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ACCESS_TOKEN_TTL": -60}
    expired = token_for(*owner).json()["access_token"]
    assert _introspect(client, owner, expired).json() == {"active": False}


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 6000])
def test_garbage_tokens_are_inactive_not_errors(client, owner, garbage):
    assert _introspect(client, owner, garbage).json() == {"active": False}
    assert _revoke(client, owner, garbage).status_code == 200


def test_introspection_requires_client_authentication(client, token):
    response = client.post("/oauth2/introspect", form({"token": token}), content_type=FORM)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    wrong = client.post("/oauth2/introspect", form({"token": token}), content_type=FORM,
                        HTTP_AUTHORIZATION=basic("nobody", "nothing"))
    assert wrong.status_code == 401


def test_revocation_requires_client_authentication(client, owner, token):
    response = client.post("/oauth2/revoke", form({"token": token}), content_type=FORM)
    assert response.status_code == 401
    assert _introspect(client, owner, token).json()["active"] is True


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
def test_missing_token_parameter_is_invalid_request(client, owner, path):
    auth = basic(owner[0].client_id, owner[1])
    response = client.post(path, "", content_type=FORM, HTTP_AUTHORIZATION=auth)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
def test_get_is_405(client, db, path):
    assert client.get(path).status_code == 405
