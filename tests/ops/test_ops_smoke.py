"""Short runs of `make cluster`, `make faults` and `make soak` (each a minute or two).

The scripts' own promises decide (each exits 1 when one fails); here they run with tiny
durations in the PostgreSQL pass. Without HAProxy or PostgreSQL's server binaries they
are skipped locally and fail under CI=true (.ci/run installs them). OPS_SMOKE_*_PORT and
OPS_SMOKE_DB_PREFIX keep runs that share a machine apart (the databases are named after
this run's test database unless OPS_SMOKE_DB_PREFIX is set).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from scripts.opslib import initdb_available
from tests.test_support import admin_dsn, database_prefix, require

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.ops_smoke,
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="production-like runs on PostgreSQL: they run in the PostgreSQL pass"),
]






def db_prefix(default: str) -> list[str]:
    prefix = os.environ.get("OPS_SMOKE_DB_PREFIX")
    return ["--db-prefix", f"{prefix}_{default}" if prefix else database_prefix(default)]


def run(*args: str, timeout: int = 120) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result.stdout


def test_cluster_smoke():
    require(shutil.which("haproxy") is not None, "haproxy (apt-get install haproxy)")
    require(shutil.which("redis-server") is not None, "redis-server")
    out = run("scripts/cluster.py", "--instances", "2", "--load-seconds", "1.5", "--load-threads", "4",
              "--base-port", os.environ.get("OPS_SMOKE_CLUSTER_PORT", "18450"), "--admin-dsn", admin_dsn(),
              *db_prefix("cluster"))
    for check in ("token from any instance verifies everywhere", "revocation through one instance holds on all",
                  "suspension holds on all instances at once", "client-auth lockout through one instance holds",
                  "one instance killed under load"):
        line = next(line for line in out.splitlines() if line.startswith(check))
        assert " PASS " in line, out
    assert "FAIL" not in out


def test_faults_smoke():
    require(initdb_available(), "PostgreSQL's server binaries (initdb, pg_ctl)")
    require(shutil.which("redis-server") is not None, "redis-server")
    require(shutil.which("haproxy") is not None, "haproxy (apt-get install haproxy)")
    out = run("scripts/faults.py", "--pg-outage", "3", "--redis-outage", "1", "--settle", "2",
              "--base-port", os.environ.get("OPS_SMOKE_FAULTS_PORT", "18460"), timeout=240)
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    for fault in ("PostgreSQL restarted", "PostgreSQL stopped", "Redis restarted", "Redis FLUSHALL",
                  "worker SIGKILL", "SIGHUP via HAProxy", "SIGTERM via HAProxy", "rolling restart via HAProxy"):
        assert " PASS " in rows[fault], out
    # The replayed assertion is refused after Redis lost everything it held.
    assert "first 200, replay 400" in rows["Redis FLUSHALL"] or "first 200, replay 401" in rows["Redis FLUSHALL"]


def test_soak_smoke():
    require(shutil.which("redis-server") is not None, "redis-server")
    out = run("scripts/soak.py", "--seconds", "20", "--interval", "5", "--write-every", "1",
              "--port", os.environ.get("OPS_SMOKE_SOAK_PORT", "18470"), "--admin-dsn", admin_dsn(),
              *db_prefix("soak"))
    for promise in ("no errors under load", "worker RSS flat", "PostgreSQL connections within the pools' bound",
                    "audit chain verifies", "participant count as written"):
        line = next(line for line in out.splitlines() if line.startswith(promise))
        assert " PASS " in line, out
