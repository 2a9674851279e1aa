"""The bench's scale mode runs end to end at a tiny size: a smoke test, not a timing."""

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
                                reason="the scale mode fills PostgreSQL; it runs in the PostgreSQL pass")


def test_scale_mode_fills_measures_and_prints_every_figure(tmp_path):
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is required under CI=true")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    # A database of its own, beside this run's test database.
    database = f"{connection.settings_dict['NAME']}_scale"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--scale", "--participants", "20,50", "--duration", "1", "--rounds", "1",
         "--write-samples", "3", "--token-samples", "5", "--writers", "1,2", "--writer-seconds", "0.5",
         "--workers", "1", "--database", database, "--output", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads((tmp_path / "scale-latest.json").read_text())
    assert payload["meta"]["sizes"] == [20, 50]
    for size, figures in payload["results"].items():
        # The cursor crawl sees every listed participant once: the filled ones, the bench's own
        # two, and those the write measurements of smaller sizes onboarded.
        assert figures["crawl_participants"] == figures["participants_listed"] >= int(size) + 2
        # The chain is intact (the measurement asserts it) and holds onboarding's three events each.
        assert figures["audit_events"] >= 3 * int(size)
        assert figures["verify_incremental_events"] < figures["audit_events"]
        for key in ("detail_rps", "jwks_rps", "search_rps", "list_page1_rps", "revalidation_304_rps",
                    "token_one_client_rps", "token_random_clients_rps", "token_random_over_one",
                    "token_one_server_us", "token_random_server_us", "search_uncached_us", "search_broad_uncached_us",
                    "detail_server_us", "search_server_us",
                    "mapping_grant_ms", "onboarding_ms",
                    "token_inproc_one_us", "token_inproc_random_cached_us", "token_inproc_miss_us"):
            assert figures[key] > 0, key
    assert set(payload["meta"]["writers"]) == {"1", "2"}
    assert payload["meta"]["cpu_hog"] is False
    for figures in payload["results"].values():
        # Every measured pass records its load average and the hit rate of the cache it reads,
        # held to what its warm-up reached.
        measured = {p["pass"] for p in figures["passes"]}
        assert {"detail", "jwks", "search", "token, one", "token, many"} <= measured
        for p in figures["passes"]:
            assert p["load1"] >= 0 and "feed" in p
        token_passes = [p for p in figures["passes"] if p["pass"].startswith("token")]
        assert all(p["hit_rate"] is not None for p in token_passes)
        assert set(figures["warm_hit_rate"]) == {"detail", "jwks", "search", "token"}
    assert "measured passes at 50" in result.stdout
    assert " inproc " in result.stdout and " wrk " in result.stdout
    for label in ("detail, random of a hot set", "crawl all pages", "token, random hot-set clients",
                  "token, random/one client", "search CPU (+DB), uncached",
                  "verify_audit_log, incremental", "verify_audit_log --full", "growth"):
        assert label in result.stdout
