"""The benchmark harness itself runs (for a second): a smoke test, not a timing."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql",
                                reason="the harness benchmarks on PostgreSQL; it runs in the PostgreSQL pass")


def test_harness_runs_and_writes_results(tmp_path):
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is required under CI=true")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--duration", "1", "--rounds", "1", "--cases", "token,registry,verify",
         "--no-peer", "--output", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads((tmp_path / "latest.json").read_text())
    cases = {row["case"] for row in payload["rows"]}
    assert {"token, client_secret_basic", "registry GET participant, 200", "registry GET participant, 304"} <= cases
    assert all(row["requests"] > 0 and row["errors"] == 0 for row in payload["rows"])
    assert {row["alg"] for row in payload["verification"]} == {"RS256", "PS256", "ES256", "EdDSA"}
    assert "req/s" in result.stdout
