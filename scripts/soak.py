"""A bounded soak: steady mixed load on one instance, watched every interval.

    make soak                                  # ten minutes (SOAK_SECONDS=... to change)
    .venv/bin/python scripts/soak.py --seconds 20 --interval 5   # a quick run

One instance (the project's launcher: granian; two workers) on a temporary database on
the given PostgreSQL server (created and dropped here) and a private redis-server.
Client threads send a steady mix: token requests, introspection, registry reads; a
writer thread makes admin/service writes through the registry's commands (onboard a
participant, suspend and reinstate one, change a grant), each an audit event. Every
interval it prints the errors, each worker's RSS and the database's connection count;
at the end it verifies the audit chain (verify_audit_log) and that the participant
count is what the writes made it.

Promises (exit 1 when one fails): no error (no 5xx, no failed connection, no
unexpected status), worker RSS grows by less than 25% after the first interval,
connections stay within the pool's bound, the audit chain verifies, the participant
count matches. Exit 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opslib import (
    ROOT,
    Instance,
    Load,
    OwnRedis,
    add_db_prefix_option,
    add_server_option,
    log,
    manage,
    onboard,
    outcomes,
    prepare_database,
    print_table,
    rss_kib,
    service_env,
    temp_database,
)

EXPECTED = {"200", "304"}
WORKERS = 2
POOL_MAX = 8


def mixed_requests(url: str, agent, lender):
    auth = (agent.client_id, agent.client_secret)
    state = {"token": None, "at": 0.0}
    lock = threading.Lock()

    def registry_token(client: httpx.Client) -> str:
        with lock:
            if state["token"] is None or time.monotonic() - state["at"] > 300:
                response = client.post(f"{url}/oauth2/token", auth=auth,
                                       data={"grant_type": "client_credentials", "resource": "urn:ocen:registry"})
                response.raise_for_status()
                state["token"], state["at"] = response.json()["access_token"], time.monotonic()
            return state["token"]

    def make(client: httpx.Client, n: int):
        kind = n % 4
        if kind == 0:
            return "token", client.post(f"{url}/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth)
        token = registry_token(client)
        if kind == 1:
            return "introspect", client.post(f"{url}/oauth2/introspect", data={"token": token}, auth=auth)
        if kind == 2:
            return "registry", client.get(f"{url}/registry/v1/participants/{lender.participant_id}",
                                          headers={"Authorization": f"Bearer {token}"})
        return "registry list", client.get(f"{url}/registry/v1/participants",
                                           headers={"Authorization": f"Bearer {token}"})

    return make


class Writer(threading.Thread):
    """Admin/service writes in this process, through the registry's commands (each one audited)."""

    def __init__(self, agent, lender, spare, pause: float) -> None:
        super().__init__(daemon=True)
        self.agent, self.lender, self.spare, self.pause = agent, lender, spare, pause
        self.stop_event = threading.Event()
        self.writes: list[str] = []
        self.errors: list[str] = []
        self.onboarded = 0

    def run(self) -> None:
        from io import StringIO

        from cryptography.hazmat.primitives.asymmetric import ec
        from django.core.management import call_command
        from django.db import connection

        from ocen_sdk.key_loading import public_pem

        steps = itertools.cycle(["onboard", "suspend", "reinstate", "grant"])
        try:
            for n in itertools.count():
                if self.stop_event.wait(self.pause):
                    break
                step = next(steps)
                try:
                    if step == "onboard":
                        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
                            handle.write(public_pem(ec.generate_private_key(ec.SECP256R1())))
                        try:
                            call_command("onboard", org_name=f"Soak Org {n}", role="LENDER",
                                         base_url=f"https://soak-{n}.example", public_key=handle.name, json=True,
                                         stdout=StringIO())
                        finally:
                            os.unlink(handle.name)
                        self.onboarded += 1
                    elif step == "suspend":
                        call_command("suspend", self.spare.participant_id, reason="soak", stdout=StringIO())
                    elif step == "reinstate":
                        call_command("reinstate", self.spare.participant_id, stdout=StringIO())
                    else:
                        call_command("grant_access", self.agent.participant_id, self.lender.participant_id,
                                     scopes=f"ocen.loan soak.{n % 3}", stdout=StringIO())
                    self.writes.append(step)
                except Exception as exc:
                    self.errors.append(f"{step}: {type(exc).__name__}: {exc}"[:200])
        finally:
            connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples (RSS, connections)")
    parser.add_argument("--threads", type=int, default=3, help="client threads")
    parser.add_argument("--pause", type=float, default=0.005, help="seconds each client waits between requests")
    parser.add_argument("--write-every", type=float, default=2.0, help="seconds between admin/service writes")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SOAK_PORT", "18430")),
                        help="the service on this port, Redis on +1")
    parser.add_argument("--admin-dsn", default=os.environ.get("SOAK_ADMIN_DSN",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="PostgreSQL server where a temporary database is created (and dropped)")
    add_server_option(parser)
    add_db_prefix_option(parser, "ocen_soak")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("make soak needs redis-server", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ocen-soak-"))
    redis = OwnRedis(args.port + 1, workdir)
    instance: Instance | None = None
    load: Load | None = None
    writer: Writer | None = None
    rows, promises = [], []
    try:
        with temp_database(args.admin_dsn, args.db_prefix) as database_url:
            redis.start()
            url = f"http://127.0.0.1:{args.port}"
            env = service_env(database_url=database_url, redis_url=redis.url, issuer=url,
                              extra={"DATABASE_POOL_MAX_SIZE": str(POOL_MAX)})
            prepare_database(env)
            agent, spare = onboard(env, "Soak Agent"), onboard(env, "Soak Spare")
            lender = onboard(env, "Soak Lender", "LENDER")
            manage(env, "grant_access", agent.participant_id, lender.participant_id, "--scopes", "ocen.loan")
            instance = Instance("soak", args.port, env, workers=WORKERS, server=args.server)
            instance.start()

            os.environ.update({k: v for k, v in env.items() if k not in {"GUNICORN_BIND"}})
            os.environ["DJANGO_SETTINGS_MODULE"] = "authservice.settings"
            os.chdir(ROOT)
            import django

            django.setup()
            from registry.models import Participant

            participants_before = Participant.objects.count()
            database = database_url.rsplit("/", 1)[1]
            load = Load(mixed_requests(url, agent, lender), threads=args.threads, pause=args.pause).start()
            writer = Writer(agent, lender, spare, args.write_every)
            writer.start()
            load_started = t_prev = time.monotonic()
            end = load_started + args.seconds
            n = 0
            while time.monotonic() < end:
                time.sleep(max(0.0, min(args.interval, end - time.monotonic())))
                n += 1
                now = time.monotonic()
                window = load.between(t_prev, now)
                counts = outcomes(window)
                errors = sum(v for k, v in counts.items() if k not in EXPECTED)
                with psycopg.connect(args.admin_dsn, connect_timeout=5) as conn:
                    connections = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                               (database,)).fetchone()[0]
                rss = [round(rss_kib(pid) / 1024, 1) for pid in sorted(instance.worker_pids())]
                latencies = sorted(s.ended - s.started for s in window) or [0.0]
                rows.append([n, f"{now - load_started:.0f}", len(window), f"{len(window) / (now - t_prev):.0f}",
                             errors, ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k not in EXPECTED)
                             or "—", f"{statistics.median(latencies) * 1000:.1f}",
                             f"{latencies[int(len(latencies) * 0.99) - 1 if len(latencies) > 1 else 0] * 1000:.1f}",
                             " / ".join(map(str, rss)), connections, len(writer.writes)])
                log(f"interval {n}: {len(window)} requests, {errors} errors, RSS {rss} MiB, {connections} connections")
                t_prev = now
            load.stop()
            writer.stop_event.set()
            writer.join(timeout=60)
            all_counts = outcomes(load.snapshot())
            errors = sum(v for k, v in all_counts.items() if k not in EXPECTED)
            promises.append(["no errors under load", errors == 0 and not writer.errors,
                             f"{sum(all_counts.values())} requests: {dict(all_counts)}; writes "
                             f"{len(writer.writes)}, failed {len(writer.errors)} {writer.errors[:3]}"])
            rss_series = [[float(x) for x in row[8].split(" / ") if x] for row in rows]
            if len(rss_series) >= 2 and rss_series[0] and rss_series[-1]:
                first, last = sum(rss_series[0]), sum(rss_series[-1])
                drift = (last - first) / first
                promises.append(["worker RSS flat (< 25% growth after the first interval)", drift < 0.25,
                                 f"{first:.1f} -> {last:.1f} MiB ({drift:+.1%})"])
            conn_series = [row[9] for row in rows]
            bound = WORKERS * (POOL_MAX + 1) + 2  # the pools and each worker's change feed; this script's two
            promises.append(["PostgreSQL connections within the pools' bound",
                             bool(conn_series) and max(conn_series) <= bound,
                             f"per interval {conn_series}; bound {bound}"])
            audit = manage(env, "verify_audit_log")
            promises.append(["audit chain verifies", "intact" in audit.lower(), audit.strip().splitlines()[0]])
            participants_after = Participant.objects.count()
            expected = participants_before + writer.onboarded
            promises.append(["participant count as written", participants_after == expected,
                             f"{participants_before} + {writer.onboarded} onboarded = {expected}; "
                             f"counted {participants_after}"])
            from django.db import connections as django_connections

            django_connections.close_all()
            instance.cleanup()
            instance = None
    except Exception as exc:
        promises.append(["soak ran", False, f"{type(exc).__name__}: {exc}"[:400]])
        if instance:
            log(instance.log_tail())
    finally:
        if load:
            load.stop()
        if writer:
            writer.stop_event.set()
        if instance:
            instance.cleanup()
        redis.stop()
        with contextlib.suppress(Exception):
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(f"make soak — {args.seconds:g} s, {args.threads} client threads + 1 writer, one instance "
                f"({args.server}, {WORKERS} workers), PostgreSQL + Redis",
                ["#", "t (s)", "requests", "req/s", "errors", "error kinds", "p50 ms", "p99 ms", "worker RSS MiB",
                 "PG conns", "writes"], rows)
    print_table("promises", ["promise", "result", "detail"],
                [[p[0], "PASS" if p[1] else "FAIL", p[2]] for p in promises])
    return 0 if promises and all(p[1] for p in promises) else 1


if __name__ == "__main__":
    sys.exit(main())
