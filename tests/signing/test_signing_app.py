"""The signing app owns the service's keys: the SigningKey model moved here with its
table and rows, and every old import path, command and admin link still leads to it.
(That it imports neither authservice nor registry is import-linter's contract.)"""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import get_commands
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from signing.jwks import published_jwks
from signing.keys import active_signer, key_cache, signing_key_ensure
from signing.models import SigningKey


def test_the_model_is_the_signing_apps_over_the_table_authservice_created():
    from authservice.models import SigningKey as OldPath

    assert OldPath is SigningKey
    assert SigningKey._meta.app_label == "signing"
    assert SigningKey._meta.db_table == "authservice_signingkey"


def test_old_import_paths_name_the_signing_apps_objects():
    from authservice import signing_keys
    from authservice.admin import SigningKeyAdmin
    from authservice.conf import SUPPORTED_SIGNING_ALGS
    from registry.api.cache import registry_signature
    from signing import admin, conf, jwks, kek, keys, responses

    for name in ("active_signer", "key_cache", "signing_key_ensure", "signing_key_prepublish", "signing_key_activate",
                 "signing_keys_reencrypt", "undecryptable_keys", "SigningKeyUnavailable", "SigningKeyEvent",
                 "ignore_key_event", "_new_key", "_load_private"):
        assert getattr(signing_keys, name) is getattr(keys, name)
    for name in ("is_random_key", "weak_first_keys", "refuse_weak_keys", "key_encryption", "RANDOM_KEY_RULE",
                 "_fernet_key"):
        assert getattr(signing_keys, name) is getattr(kek, name)
    assert signing_keys.published_jwks is jwks.published_jwks
    assert signing_keys._decrypts is kek.decrypts
    assert SigningKeyAdmin is admin.SigningKeyAdmin
    assert SUPPORTED_SIGNING_ALGS is conf.SUPPORTED_SIGNING_ALGS
    assert registry_signature is responses.sign_response


def test_the_key_commands_are_the_signing_apps():
    commands = get_commands()
    assert commands["rotate_signing_key"] == "signing"
    assert commands["reencrypt_keys"] == "signing"


def test_the_old_admin_pages_of_signing_keys_lead_to_the_new_ones(admin_client, signing_key):
    old = admin_client.get(f"/admin/authservice/signingkey/{signing_key.pk}/change/?_changelist_filters=x")
    assert old.status_code == 302
    assert old["Location"] == (reverse("admin:signing_signingkey_change", args=[signing_key.pk])
                               + "?_changelist_filters=x")
    assert admin_client.get("/admin/authservice/signingkey/")["Location"] == reverse(
        "admin:signing_signingkey_changelist")
    listing = admin_client.get(reverse("admin:signing_signingkey_changelist"))
    assert listing.status_code == 200 and signing_key.kid in listing.content.decode()


def test_the_content_type_moves_with_the_model_keeping_its_permissions(db):
    from importlib import import_module

    from django.apps import apps

    move = import_module("signing.migrations.0001_initial")
    content_type = ContentType.objects.get_for_model(SigningKey)
    permissions = set(Permission.objects.filter(content_type=content_type).values_list("pk", flat=True))
    assert permissions
    ContentType.objects.filter(pk=content_type.pk).update(app_label="authservice")
    move.move_content_type(apps, None)
    content_type.refresh_from_db()
    assert content_type.app_label == "signing"
    assert set(Permission.objects.filter(content_type=content_type).values_list("pk", flat=True)) == permissions


@pytest.mark.django_db(transaction=True)
def test_a_key_stored_before_the_move_signs_after_it():
    """The upgrade in small: back to the state before the move (authservice 0010, no
    signing app), the key seen there as authservice's, then forward again."""
    key, _ = signing_key_ensure()
    executor = MigrationExecutor(connection)
    before = executor.migrate([("authservice", "0010_client_generation_trigger"), ("signing", None)])
    try:
        OldModel = before.apps.get_model("authservice", "SigningKey")
        assert OldModel.objects.get(kid=key.kid).state == "ACTIVE"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    key_cache.clear()
    assert SigningKey.objects.get().kid == key.kid
    assert active_signer().kid == key.kid
    assert [jwk["kid"] for jwk in published_jwks()["keys"]] == [key.kid]
