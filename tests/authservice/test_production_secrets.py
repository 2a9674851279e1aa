"""A production deployment refuses to start without its own secrets; development makes
its keys once and says so; secrets may come from files (Docker and Kubernetes secrets).

Each case runs ``manage.py check`` in a fresh process with exactly the environment an
operator would set, on a temporary SQLite database and var/ directory.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ops  # manage.py and the launcher in fresh processes
ROOT = Path(__file__).resolve().parents[2]
SECRET = "production-secret-key-0123456789abcdef0123456789abcdef"
KEK = "RvFKuO1GfY-xHjvUFfVQ2-5wlmRk_-dAOlJYnzQS9U4"  # a generated key: a passphrase is refused (key shape check)


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "AUTHSERVICE_", "DATABASE_", "REDIS_", "GUNICORN_", "PROMETHEUS_"))}
    environment = {**base, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
                   "AUTHSERVICE_VAR_DIR": str(tmp_path / "var"), **env}
    return subprocess.run([sys.executable, "manage.py", *(args or ("check",))], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("given", "missing"), [
    ({}, "DJANGO_SECRET_KEY and AUTHSERVICE_KEY_ENCRYPTION_KEY are not set"),
    ({"DJANGO_SECRET_KEY": SECRET}, "AUTHSERVICE_KEY_ENCRYPTION_KEY is not set"),
    ({"AUTHSERVICE_KEY_ENCRYPTION_KEY": KEK}, "DJANGO_SECRET_KEY is not set"),
    ({"DJANGO_SECRET_KEY": "  ", "AUTHSERVICE_KEY_ENCRYPTION_KEY": KEK}, "DJANGO_SECRET_KEY is not set"),
])
def test_production_refuses_to_start_naming_each_missing_secret(tmp_path, given, missing):
    result = _run(tmp_path, AUTHSERVICE_ENV="production", **given)
    assert result.returncode != 0
    assert missing in result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()  # nothing invented


def test_production_starts_with_secrets_from_files(tmp_path):
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "kek").write_text(KEK + "\n")
    result = _run(tmp_path, AUTHSERVICE_ENV="production", DJANGO_SECRET_KEY_FILE=str(tmp_path / "secret"),
                  AUTHSERVICE_KEY_ENCRYPTION_KEY_FILE=str(tmp_path / "kek"))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()
    shown = _run(tmp_path, "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY == "
                 f"{SECRET!r}, settings.AUTHSERVICE['KEY_ENCRYPTION_KEYS'] == [{KEK!r}])",
                 AUTHSERVICE_ENV="production", DJANGO_SECRET_KEY_FILE=str(tmp_path / "secret"),
                 AUTHSERVICE_KEY_ENCRYPTION_KEY_FILE=str(tmp_path / "kek"))
    assert shown.stdout.splitlines()[-1].split() == ["True", "True"], shown.stderr


@pytest.mark.parametrize(("env", "message"), [
    ({"DJANGO_SECRET_KEY": SECRET, "DJANGO_SECRET_KEY_FILE": "/dev/null"}, "Both DJANGO_SECRET_KEY and "
                                                                         "DJANGO_SECRET_KEY_FILE are set"),
    ({"DJANGO_SECRET_KEY_FILE": "/nonexistent/secret"}, "DJANGO_SECRET_KEY_FILE=/nonexistent/secret: cannot be read"),
    ({"AUTHSERVICE_ENV": "prod"}, "AUTHSERVICE_ENV='prod': choose development or production"),
])
def test_a_misconfigured_secret_is_refused_by_name(tmp_path, env, message):
    result = _run(tmp_path, **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_development_generates_its_key_once_and_says_so(tmp_path):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Development secret key generated in" in first.stderr
    key = (tmp_path / "var" / "secret_key").read_text()
    assert oct((tmp_path / "var" / "secret_key").stat().st_mode & 0o777) == "0o600"
    second = _run(tmp_path)
    assert second.returncode == 0
    assert "generated" not in second.stderr
    assert (tmp_path / "var" / "secret_key").read_text() == key


def test_the_launcher_refuses_production_without_secrets_before_any_worker_starts(tmp_path):
    from tests.test_support import free_port

    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "AUTHSERVICE_", "DATABASE_", "REDIS_", "GUNICORN_", "PROMETHEUS_"))}
    result = subprocess.run([sys.executable, "-m", "authservice.serve"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**base, "AUTHSERVICE_ENV": "production",
                                              "AUTHSERVICE_VAR_DIR": str(tmp_path),
                                              "GUNICORN_BIND": f"127.0.0.1:{free_port()}",
                                              "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"})
    assert result.returncode == 2
    assert "DJANGO_SECRET_KEY and AUTHSERVICE_KEY_ENCRYPTION_KEY are not set" in result.stderr
    assert "Spawning worker" not in result.stderr
