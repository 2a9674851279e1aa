"""Key management that survives mistakes: retired private halves erased at once, a
wrong or mistyped key-encryption key caught at `manage.py check` and answered with a
503 (never a 500), re-encryption under a new key-encryption key, pre-publication
races, and an audit event for every change to the service's signing keys."""

import importlib
import json
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import serialization
from django.core import checks
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone
from jwcrypto import jwk

from authservice.conf import authservice_settings
from authservice.management.commands import reencrypt_keys
from authservice.models import SigningKey
from authservice.services import client_create
from authservice.settings import env_list
from authservice.signing_keys import key_cache, key_encryption, signing_key_ensure
from registry.audit import verify_chain
from registry.models import AuditAction, AuditEvent
from signing import keys as signing_keys
from tests.audit import AuditTrail
from tests.conftest import FORM, basic, form

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _run(command: str, *args, **options) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, **options)
    return out.getvalue()


def _kek(settings, *keys: str) -> None:
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": list(keys)}
    key_cache.clear()


def _errors(check_id: str) -> list[checks.CheckMessage]:
    return [message for message in checks.run_checks() if message.id == check_id]


def _kid_of(pem: bytes) -> str:
    private = serialization.load_pem_private_key(pem, password=None)
    return jwk.JWK.from_pyca(private.public_key()).thumbprint()


# --- 1. A retired key's private half is gone when it retires ----------------------------------

def test_activation_erases_the_retired_keys_private_half_leaving_no_decryptable_copy(signing_key, client):
    _run("rotate_signing_key")
    _run("rotate_signing_key", "--activate", "--force")

    retired = SigningKey.objects.get(pk=signing_key.pk)
    assert retired.state == "RETIRED" and retired.private_key_encrypted == ""
    assert signing_key.kid in [key["kid"] for key in client.get("/oauth2/jwks").json()["keys"]]
    # Every value in every row of the live table: none decrypts to the retired private key.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {SigningKey._meta.db_table}")  # noqa: S608 (a model's table name)
        values = [value for row in cursor.fetchall() for value in row if isinstance(value, str)]
    recovered = []
    for value in values:
        try:
            recovered.append(_kid_of(key_encryption().decrypt(value.encode("ascii"))))
        except (InvalidToken, UnicodeEncodeError):
            continue
    assert signing_key.kid not in recovered
    assert len(recovered) == 1  # the new active key, and nothing else


def test_upgrade_migration_erases_private_halves_retired_keys_kept(signing_key):
    _run("rotate_signing_key")
    _run("rotate_signing_key", "--activate", "--force")
    SigningKey.objects.filter(pk=signing_key.pk).update(private_key_encrypted=signing_key.private_key_encrypted)
    migration = importlib.import_module("authservice.migrations.0005_erase_retired_private_keys")
    # As migrate runs it: over the models as they were then (SigningKey was authservice's).
    historical = MigrationLoader(connection).project_state(("authservice", "0005_erase_retired_private_keys")).apps
    migration.erase_retired_private_keys(historical, None)
    assert SigningKey.objects.get(pk=signing_key.pk).private_key_encrypted == ""
    assert SigningKey.objects.get(state="ACTIVE").private_key_encrypted != ""


# --- 2. A wrong key-encryption key is caught, and never a 500 -----------------------------------

def test_key_encryption_keys_are_trimmed_and_empty_items_dropped(monkeypatch, settings):
    monkeypatch.setenv("AUTHSERVICE_KEY_ENCRYPTION_KEY", f" {NEW} , ,{OLD}\n")
    assert env_list("AUTHSERVICE_KEY_ENCRYPTION_KEY", "") == [NEW, OLD]
    settings.AUTHSERVICE = {"KEY_ENCRYPTION_KEYS": [f"{NEW}\n", "", "  ", f" {OLD}"]}
    assert authservice_settings.KEY_ENCRYPTION_KEYS == [NEW, OLD]


def test_a_key_with_a_stray_space_or_newline_still_decrypts(db, settings):
    _kek(settings, f" {OLD}\n")
    key, _ = signing_key_ensure()
    _kek(settings, f"{NEW} ", f"\n{OLD}\n")
    assert key_cache.signer().kid == key.kid


def test_key_encryption_keys_that_are_not_a_list_fail_the_check(settings):
    settings.AUTHSERVICE = {"KEY_ENCRYPTION_KEYS": f"{NEW},{OLD}"}
    assert [message.id for message in checks.run_checks() if message.level >= checks.ERROR] == ["authservice.E001"]


def test_wrong_key_encryption_key_fails_manage_py_check_naming_the_kid_and_the_fix(db, settings):
    _kek(settings, OLD)
    key, _ = signing_key_ensure()
    _kek(settings, NEW)
    (error,) = _errors("authservice.E002")
    assert key.kid in error.msg and "ACTIVE" in error.msg
    assert "AUTHSERVICE_KEY_ENCRYPTION_KEY=current,old" in error.hint and "reencrypt_keys" in error.hint
    with pytest.raises(SystemCheckError, match=key.kid):
        call_command("check")


def test_setting_a_key_encryption_key_where_there_was_none_is_diagnosed(db, settings):
    _kek(settings)
    key, _ = signing_key_ensure()  # encrypted with the key derived from DJANGO_SECRET_KEY
    _kek(settings, NEW)
    (error,) = _errors("authservice.E002")
    assert key.kid in error.msg
    assert "before AUTHSERVICE_KEY_ENCRYPTION_KEY was set" in error.hint


def test_rotating_django_secret_key_without_a_key_encryption_key_is_diagnosed(db, settings):
    _kek(settings)
    key, _ = signing_key_ensure()
    settings.SECRET_KEY = "a-rotated-django-secret-key-" + "x" * 30
    key_cache.clear()
    (error,) = _errors("authservice.E002")
    assert key.kid in error.msg and "DJANGO_SECRET_KEY, which changed" in error.hint


def test_check_is_clean_when_every_key_decrypts(db, settings):
    _kek(settings, OLD)
    signing_key_ensure()
    _run("rotate_signing_key")
    _kek(settings, NEW, OLD)
    assert _errors("authservice.E002") == []


def test_token_endpoint_answers_503_not_500_when_the_signing_key_cannot_be_decrypted(db, settings, client):
    _kek(settings, OLD)
    signing_key_ensure()
    oauth_client, secret = client_create(name="client")
    _kek(settings, NEW)
    response = client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                           HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response["Retry-After"]) > 0
    assert response["Cache-Control"] == "no-store"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["signing_key"] == "unloadable"


def test_token_endpoint_answers_503_without_any_signing_key(make_client, client):
    oauth_client, secret = make_client()
    SigningKey.objects.all().delete()
    key_cache.clear()
    response = client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                           HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable" and "Retry-After" in response


def test_a_next_key_that_cannot_be_decrypted_is_never_activated(db, settings):
    _kek(settings, OLD)
    active, _ = signing_key_ensure()
    _run("rotate_signing_key")
    _kek(settings, NEW)
    with pytest.raises(CommandError, match="cannot be decrypted"):
        _run("rotate_signing_key", "--activate", "--force")
    assert SigningKey.objects.get(state="ACTIVE") == active


# --- 3. reencrypt_keys ------------------------------------------------------------------------

def test_reencrypt_keys_moves_every_key_under_the_first_key_encryption_key(db, settings):
    _kek(settings, OLD)
    active, _ = signing_key_ensure()
    _run("rotate_signing_key")
    _kek(settings, NEW, OLD)
    report = json.loads(_run("reencrypt_keys", "--json"))
    assert report == {"reencrypted": [active.kid, SigningKey.objects.get(state="NEXT").kid],
                      "already_current": [], "without_private_key": 0}

    _kek(settings, NEW)  # the old key-encryption key can go now
    assert key_cache.signer().kid == active.kid
    assert _errors("authservice.E002") == []
    again = json.loads(_run("reencrypt_keys", "--json"))
    assert again["reencrypted"] == [] and len(again["already_current"]) == 2
    assert "Re-encrypted 0 key(s); 2 already" in _run("reencrypt_keys")


def test_reencrypt_keys_refuses_and_changes_nothing_if_a_key_cannot_be_decrypted(db, settings):
    _kek(settings, OLD)
    signing_key_ensure()
    other = Fernet.generate_key().decode()
    _kek(settings, other)
    _run("rotate_signing_key")
    before = dict(SigningKey.objects.values_list("kid", "private_key_encrypted"))
    trail = AuditTrail()
    _kek(settings, NEW, other)
    # As from the command line, where system checks run first: this command runs
    # although authservice.E002 fails (call_command would skip the checks).
    command = reencrypt_keys.Command(stdout=StringIO(), stderr=StringIO())
    options = command.create_parser("manage.py", "reencrypt_keys").parse_args([])
    with pytest.raises(CommandError, match=r"cannot be decrypted.*nothing was changed"):
        command.execute(**vars(options))
    assert dict(SigningKey.objects.values_list("kid", "private_key_encrypted")) == before
    trail.assert_none()


def test_reencrypt_keys_skips_retired_keys_which_hold_no_private_half(signing_key):
    _run("rotate_signing_key")
    _run("rotate_signing_key", "--activate", "--force")
    assert json.loads(_run("reencrypt_keys", "--json"))["without_private_key"] == 1


# --- 5. Pre-publication races --------------------------------------------------------------------

def test_a_concurrent_prepublication_is_refused_cleanly(signing_key, monkeypatch):
    """The other process inserts its NEXT key while this one generates its own."""
    generate = signing_keys._generate_private_key
    winner = {}

    def racing_generate(alg):
        if not winner:
            winner["key"] = None  # the other process's _new_key generates with this function too
            winner["key"] = signing_keys._new_key(alg=alg, state="NEXT", now=signing_key.created_at)
        return generate(alg)

    monkeypatch.setattr(signing_keys, "_generate_private_key", racing_generate)
    trail = AuditTrail()
    with pytest.raises(CommandError, match="pre-published a key at the same moment"):
        _run("rotate_signing_key")
    assert winner["key"] is not None
    trail.assert_none()  # (here the simulated winner shares the refused transaction; see test_concurrency)


def test_a_concurrent_first_start_returns_the_winners_key(db, monkeypatch):
    generate = signing_keys._generate_private_key
    winner = {}

    def racing_generate(alg):
        if not winner:
            winner["key"] = None  # the other process's _new_key generates with this function too
            winner["key"] = signing_keys._new_key(alg=alg, state="ACTIVE", now=timezone.now())
        return generate(alg)

    monkeypatch.setattr(signing_keys, "_generate_private_key", racing_generate)
    key, created = signing_key_ensure()
    assert (key, created) == (winner["key"], False)


# --- 6. Every change to a signing key is audited ----------------------------------------------------

def _described(key: SigningKey, state: str) -> dict:
    return {"kid": key.kid, "alg": key.alg, "state": state}


def test_every_signing_key_change_writes_one_exact_audit_event(db, settings):
    _kek(settings)
    trail = AuditTrail()
    first, _ = signing_key_ensure()
    trail.assert_one(action=AuditAction.SIGNING_KEY_CREATED, actor=None, before={},
                     after=_described(first, "ACTIVE"))
    signing_key_ensure()
    trail.assert_one(action=AuditAction.SIGNING_KEY_CREATED, actor=None, before={},
                     after=_described(first, "ACTIVE"))  # finding the key changes nothing

    trail = AuditTrail()
    _run("rotate_signing_key")
    second = SigningKey.objects.get(state="NEXT")
    trail.assert_one(action=AuditAction.SIGNING_KEY_PREPUBLISHED, actor=None, before={},
                     after=_described(second, "NEXT"))
    trail = AuditTrail()
    _run("rotate_signing_key")
    trail.assert_none()

    _run("rotate_signing_key", "--activate", "--force")
    retired, activated = trail.new_events()
    first.refresh_from_db()
    assert (retired.action, activated.action) == (AuditAction.SIGNING_KEY_RETIRED, AuditAction.SIGNING_KEY_ACTIVATED)
    assert retired.before == _described(first, "ACTIVE")
    assert retired.after == {**_described(first, "RETIRED"), "private_key_erased": True,
                             "published_until": first.published_until.isoformat()}
    assert activated.before == _described(second, "NEXT")
    assert activated.after == {**_described(second, "ACTIVE"), "forced": True}
    assert {event.actor_label for event in (retired, activated)} == {"system"}

    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [NEW, settings.SECRET_KEY]}
    trail = AuditTrail()
    _run("reencrypt_keys")
    trail.assert_one(action=AuditAction.SIGNING_KEYS_REENCRYPTED, actor=None, before={},
                     after={"kids": [second.kid]})
    trail = AuditTrail()
    _run("reencrypt_keys")
    trail.assert_none()
    assert verify_chain().ok
    assert AuditEvent.objects.filter(participant=None, organisation=None).count() == 5


def test_refused_signing_key_changes_write_no_audit_event(signing_key):
    trail = AuditTrail()
    with pytest.raises(CommandError):
        _run("rotate_signing_key", "--activate", "--force")
    trail.assert_none()
    _run("rotate_signing_key")
    trail = AuditTrail()
    with pytest.raises(CommandError):
        _run("rotate_signing_key", "--activate")
    trail.assert_none()


def test_authservice_imports_the_registry_only_through_named_hooks():
    """The audit hook is a dotted path in settings; no authservice module imports the
    registry at module level (urls.py, the project's URL map, mounts its API)."""
    root = Path(__file__).resolve().parents[2] / "authservice"
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for path in root.rglob("*.py") if "migrations" not in path.parts and path.name != "urls.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.startswith(("from registry", "import registry"))
    ]
    assert offenders == []
