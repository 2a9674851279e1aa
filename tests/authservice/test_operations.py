"""Health endpoints, bootstrap, client creation command, production settings checks."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError

from authservice.models import SigningKey

ROOT = Path(__file__).resolve().parents[2]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_with_a_signing_key(client, signing_key, settings):
    response = client.get("/readyz")
    assert response.status_code == 200
    expected = {"database": "ok", "signing_key": "ok", **({"redis": "ok"} if settings.REDIS_URL else {})}
    assert response.json()["checks"] == expected  # Redis is checked only when configured


def test_readyz_stays_ready_and_names_redis_while_redis_is_down(client, signing_key, settings):
    from tests.test_support import free_port

    configured = settings.CACHES
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": settings.REDIS_URL,
                                   "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    try:
        response = client.get("/readyz")
    finally:
        settings.CACHES = configured  # the cache is cleared after each test
    assert response.status_code == 200
    assert response.json() == {"status": "degraded",
                               "checks": {"database": "ok", "signing_key": "ok", "redis": "unreachable"}}


def test_readyz_is_unavailable_without_a_signing_key(client, db):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["signing_key"] == "missing"


def test_bootstrap_creates_key_and_admin_once(db):
    out = StringIO()
    call_command("bootstrap", stdout=out)
    text = out.getvalue()
    assert "Created signing key" in text
    assert "password:" in text
    assert get_user_model().objects.get(username="admin").is_superuser
    again = StringIO()
    call_command("bootstrap", stdout=again)
    assert "password:" not in again.getvalue()
    assert SigningKey.objects.count() == 1


def test_create_client_prints_secret_once_as_json(db, signing_key, client):
    out = StringIO()
    call_command("create_client", "--name", "svc", "--json", stdout=out)
    created = json.loads(out.getvalue())
    assert set(created) == {"client_id", "client_secret"}
    response = client.post("/oauth2/token", "grant_type=client_credentials",
                           content_type="application/x-www-form-urlencoded",
                           HTTP_AUTHORIZATION=__import__("tests.conftest", fromlist=["basic"]).basic(
                               created["client_id"], created["client_secret"]))
    assert response.status_code == 200


@pytest.mark.parametrize("hook", ["GRANTS_PROVIDER", "CLIENT_KEYS_PROVIDER", "SIGNING_KEY_EVENT_RECORDER"])
def test_check_fails_clearly_when_a_hook_names_nothing(settings, hook):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, hook: "registry.oauth_hooks.no_such_function"}
    with pytest.raises(SystemCheckError, match=rf"authservice.E001.*{hook} names 'registry.oauth_hooks.no_such"):
        call_command("check")


def test_check_passes_with_the_projects_hooks(settings, signing_key):
    call_command("check")  # raises SystemCheckError on any error (the signing key decrypts)


def test_create_client_refuses_blank_name(db):
    with pytest.raises(CommandError):
        call_command("create_client", "--name", "  ")


def _manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTHSERVICE_"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.ops
def test_check_deploy_is_clean_after_the_readmes_deployment_steps(tmp_path):
    production = {
        "DJANGO_DEBUG": "0", "DJANGO_SECURE_HTTPS": "1",
        "DJANGO_SECRET_KEY": "x" * 20 + "a-long-and-random-production-secret-key-value",
        "AUTHSERVICE_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode() + "\n",
        "AUTHSERVICE_ISSUER": "https://auth.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
    }
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput"], ["bootstrap", "--no-admin"]):
        done = _manage(*step, **production)
        assert done.returncode == 0, done.stdout + done.stderr
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **production)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout

    # The mistake: another key-encryption key. `manage.py check` fails, naming the key and the fix.
    (key,) = json.loads(_manage("rotate_signing_key", "--status", "--json", **production).stdout)
    wrong = _manage("check", **{**production, "AUTHSERVICE_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode()})
    assert wrong.returncode != 0
    assert "authservice.E002" in wrong.stderr and key["kid"] in wrong.stderr, wrong.stderr
    assert "reencrypt_keys" in wrong.stderr


@pytest.mark.ops
def test_uncollected_static_files_are_warned_about_in_production(tmp_path):
    result = _manage("check", DJANGO_DEBUG="0", DJANGO_STATIC_ROOT=str(tmp_path / "empty"),
                     DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert "authservice.W003" in result.stderr and "collectstatic" in result.stderr, result.stderr


@pytest.mark.ops
def test_missing_key_encryption_key_is_warned_about_in_production():
    result = _manage("check", DJANGO_DEBUG="0")
    assert "authservice.W001" in result.stdout + result.stderr


def test_purge_expired_removes_only_expired_records(db):
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    from authservice.models import UsedNonce
    from authservice.replay import claim_once

    assert claim_once("t", "fresh", expires_at=timezone.now() + timedelta(minutes=5))
    assert not claim_once("t", "fresh", expires_at=timezone.now() + timedelta(minutes=5))
    UsedNonce.objects.all().delete()
    UsedNonce.objects.create(key=uuid.uuid4(), expires_at=timezone.now() + timedelta(minutes=1))
    UsedNonce.objects.create(key=uuid.uuid4(), expires_at=timezone.now() - timedelta(minutes=1))
    out = StringIO()
    call_command("purge_expired", stdout=out)
    assert "1 expired assertion records" in out.getvalue()
    assert UsedNonce.objects.count() == 1


def test_a_manifest_collected_before_an_upgrade_is_warned_about(db, settings, tmp_path):
    from django.core import checks

    settings.DEBUG = False
    settings.STATIC_ROOT = str(tmp_path)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"}}
    (tmp_path / "staticfiles.json").write_text(json.dumps(
        {"paths": {"admin/css/base.css": "admin/css/base.0123456789ab.css"}, "version": "1.1", "hash": "x"}))
    (warning,) = [message for message in checks.run_checks() if message.id == "authservice.W003"]
    assert "missing from the manifest" in warning.msg
    settings.DEBUG = True
    assert [message for message in checks.run_checks() if message.id == "authservice.W003"] == []


@pytest.mark.parametrize(("bind", "issuer"), [
    (None, "http://127.0.0.1:8000"),
    ("127.0.0.1:18510", "http://127.0.0.1:18510"),
    ("0.0.0.0:9000", "http://127.0.0.1:9000"),
    ("localhost:8100", "http://localhost:8100"),
    ("unix:/run/auth.sock", "http://127.0.0.1:8000"),
])
def test_without_an_issuer_setting_the_service_announces_where_it_listens(monkeypatch, bind, issuer):
    from authservice.settings import _local_issuer

    if bind is None:
        monkeypatch.delenv("GUNICORN_BIND", raising=False)
    else:
        monkeypatch.setenv("GUNICORN_BIND", bind)
    assert _local_issuer() == issuer
