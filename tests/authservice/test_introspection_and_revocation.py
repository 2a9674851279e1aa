"""RFC 7662 introspection and RFC 7009 revocation, restricted to the token's owner."""

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import get_application_model

from authservice.models import RevokedToken
from authservice.services import client_deactivate, client_reactivate, client_revoke_tokens, client_rotate_secret
from ocen_sdk.jws import peek_claims
from tests.conftest import FORM, basic, form

OAuthClient = get_application_model()


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


# --- tokens-not-before: ending every token a client holds ---------------------------------------

def _iat(token: str) -> int:
    return peek_claims(token)["iat"]


def test_tokens_not_before_is_the_next_whole_second(owner, clock):
    clock.at(0.3)
    cutoff = client_revoke_tokens(client=owner[0])
    assert cutoff == datetime.fromtimestamp(clock.second + 1, tz=UTC)
    assert OAuthClient.objects.get(pk=owner[0].pk).tokens_not_before == cutoff
    clock.at(1.0)  # exactly on a second: that second
    assert client_revoke_tokens(client=owner[0]) == cutoff


def test_tokens_not_before_never_moves_back(owner, clock):
    clock.at(5.5)
    later = client_revoke_tokens(client=owner[0])
    clock.at(0.5)  # the clock stepped back
    assert client_revoke_tokens(client=owner[0]) == later


def test_revoking_all_tokens_ends_earlier_ones_but_not_one_issued_after_in_the_same_second(
        client, owner, token_for, clock):
    clock.at(0.2)
    before = token_for(*owner).json()["access_token"]
    clock.at(0.5)
    cutoff = client_revoke_tokens(client=owner[0])
    clock.at(0.8)
    after = token_for(*owner).json()["access_token"]
    assert _iat(before) == clock.second < cutoff.timestamp() == _iat(after) == clock.second + 1
    assert peek_claims(after)["nbf"] == _iat(after)
    assert _introspect(client, owner, before).json() == {"active": False}
    assert _introspect(client, owner, after).json()["active"] is True


def test_reactivation_does_not_bring_back_tokens_issued_before_deactivation(client, owner, stranger, token):
    client_deactivate(client=owner[0])
    client_reactivate(client=owner[0])
    assert _introspect(client, owner, token).json() == {"active": False}


def test_rotation_ends_old_tokens_only_when_asked(client, owner, token_for):
    kept = token_for(*owner).json()["access_token"]
    secret = client_rotate_secret(client=owner[0])
    assert _introspect(client, (owner[0], secret), kept).json()["active"] is True
    secret = client_rotate_secret(client=owner[0], revoke_tokens=True, force=True)  # twice within a minute
    assert _introspect(client, (owner[0], secret), kept).json() == {"active": False}
    fresh = token_for(owner[0], secret).json()["access_token"]
    assert _introspect(client, (owner[0], secret), fresh).json()["active"] is True


def test_rotation_refuses_a_grace_period_with_ending_old_tokens(owner):
    with pytest.raises(ValidationError, match="grace period"):
        client_rotate_secret(client=owner[0], grace_seconds=60, revoke_tokens=True)
    assert OAuthClient.objects.get(pk=owner[0].pk).tokens_not_before is None


def test_tokens_not_before_costs_no_query(client, owner, token, token_for):
    client_revoke_tokens(client=owner[0])
    token_for(*owner)  # warm the client cache
    with CaptureQueriesContext(connection) as issuing:
        fresh = token_for(*owner).json()["access_token"]
    assert len(issuing) == 1  # the client-generation check, as without a tokens-not-before
    assert _introspect(client, owner, fresh).json()["active"] is True  # warms the key cache
    with CaptureQueriesContext(connection) as refusing:
        assert client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert len(refusing) == 1  # refused on the cached client row, before the revocation list
