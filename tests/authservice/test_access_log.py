"""The access log never carries a query string: a secret put in a URL is refused and
not written down (the service as the launcher serves it)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.test_support import free_port

pytestmark = pytest.mark.ops  # the service started by its launcher
ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-in-the-url-0123456789abcdef"


def test_a_secret_in_the_url_is_refused_and_never_logged(tmp_path):
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTHSERVICE_"))},
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "REDIS_URL": "",
           "AUTHSERVICE_VAR_DIR": str(tmp_path),
           "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1", "LOG_LEVEL": "DEBUG"}
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "authservice.serve"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            response = httpx.post(f"{url}/oauth2/token?client_id=c&client_secret={SECRET}",
                                  data={"grant_type": "client_credentials"}, timeout=5)
            assert response.status_code == 400
            assert response.json()["error"] == "invalid_request"
            httpx.get(f"{url}/healthz?access_token={SECRET}", timeout=5)
        finally:
            server.terminate()
            server.wait(timeout=20)
    written = log.read_text()
    assert '"POST /oauth2/token HTTP/1.1" 400' in written  # the request is logged ...
    assert SECRET not in written  # ... without its query string
