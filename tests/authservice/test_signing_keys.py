"""Signing key rotation through `manage.py rotate_signing_key`, and keys at rest."""

import json
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.test import override_settings
from joserfc import jwt
from joserfc.jwk import KeySet

from authservice.models import SigningKey
from authservice.signing_keys import key_cache, signing_key_ensure


def _run(*args) -> str:
    out = StringIO()
    call_command("rotate_signing_key", *args, stdout=out)
    return out.getvalue()


def _jwks(client) -> KeySet:
    return KeySet.import_key_set(client.get("/oauth2/jwks").json())


@override_settings(AUTHSERVICE={"SIGNER_CACHE_SECONDS": 0})
def test_rotation_prepublishes_then_switches_and_keeps_old_tokens_verifiable(client, make_client, token_for):
    oauth_client, secret = make_client()
    old_token = token_for(oauth_client, secret).json()["access_token"]
    old_kid = jwt.decode(old_token, _jwks(client)).header["kid"]

    _run()  # pre-publish
    assert len(client.get("/oauth2/jwks").json()["keys"]) == 2
    still_old = token_for(oauth_client, secret).json()["access_token"]
    assert jwt.decode(still_old, _jwks(client)).header["kid"] == old_kid

    _run("--activate", "--force")
    new_token = token_for(oauth_client, secret).json()["access_token"]
    jwks = _jwks(client)
    new_kid = jwt.decode(new_token, jwks).header["kid"]
    assert new_kid != old_kid
    assert jwt.decode(old_token, jwks).claims["client_id"] == oauth_client.client_id

    status = json.loads(_run("--status", "--json"))
    states = {row["kid"]: row["state"] for row in status}
    assert states == {old_kid: "RETIRED", new_kid: "ACTIVE"}
    assert all(row["published"] for row in status)


def test_activation_waits_for_jwks_caches_unless_forced(signing_key):
    _run()
    with pytest.raises(CommandError, match="published for"):
        _run("--activate")
    assert SigningKey.objects.get(state="ACTIVE") == signing_key


def test_activation_without_a_next_key_is_refused(signing_key):
    with pytest.raises(CommandError, match="no pre-published key"):
        _run("--activate", "--force")
    assert SigningKey.objects.get() == signing_key


def test_prepublishing_twice_keeps_one_next_key(signing_key):
    _run()
    assert "already pre-published" in _run()
    assert SigningKey.objects.filter(state="NEXT").count() == 1


def test_force_without_activate_is_a_usage_error(signing_key):
    with pytest.raises(CommandError):
        _run("--force")


@override_settings(AUTHSERVICE={"ACCESS_TOKEN_TTL": 0, "LEEWAY": 0})
def test_retired_key_leaves_the_jwks_once_its_tokens_expired_and_loses_its_private_half(client,
                                                                                      signing_key):
    _run()
    _run("--activate", "--force")
    kids = [key["kid"] for key in client.get("/oauth2/jwks").json()["keys"]]
    assert signing_key.kid not in kids
    _run()
    _run("--activate", "--force")
    signing_key.refresh_from_db()
    assert signing_key.state == "RETIRED"
    assert signing_key.private_key_encrypted == ""


def test_private_key_is_encrypted_at_rest(signing_key):
    stored = SigningKey.objects.get(pk=signing_key.pk).private_key_encrypted
    assert "PRIVATE KEY" not in stored
    assert stored.startswith("gAAAA")  # a Fernet token


def test_a_wrong_key_encryption_key_fails_loudly(db, settings):
    settings.AUTHSERVICE = {"KEY_ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    signing_key_ensure()
    key_cache.clear()
    settings.AUTHSERVICE = {"KEY_ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    with pytest.raises(RuntimeError, match="cannot be decrypted"):
        key_cache.signer()


def test_key_encryption_key_rotation_keeps_old_keys_readable(db, settings):
    old = Fernet.generate_key().decode()
    settings.AUTHSERVICE = {"KEY_ENCRYPTION_KEYS": [old]}
    key, _ = signing_key_ensure()
    key_cache.clear()
    settings.AUTHSERVICE = {"KEY_ENCRYPTION_KEYS": ["a new passphrase, not a fernet key", old]}
    assert key_cache.signer().kid == key.kid


def test_status_lists_keys(signing_key):
    assert signing_key.kid in _run("--status")
    assert "ACTIVE" in _run("--status")
