"""The participant SDK needs no Django, and the sample flow runs from an empty database."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})}, check=False)


def test_sdk_imports_without_django():
    code = ("import sys; sys.modules['django'] = None; sys.modules['rest_framework'] = None\n"
            "import ocen_sdk.jws, ocen_sdk.key_loading, ocen_sdk.remote, ocen_sdk.client, ocen_sdk.http\n"
            "import ocen_sdk.provider\n"
            "print('ok')")
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_sample_flow_runs_end_to_end():
    result = _python("-W", "ignore", "-m", "examples.sample_flow", env={"DJANGO_SECRET_KEY": "demo-" + "x" * 40})
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for step in ("[1] loan agent obtained an access token", "[2] lender validated the token",
                 "[3] lender identified the caller", "[4] lender signed its response",
                 "tampered body refused: HTTP 401 invalid_signature",
                 "signature by an unregistered key refused: HTTP 401 invalid_signature",
                 "response altered in transit refused by the SDK", "[done] sample flow complete"):
        assert step in out, out
