"""Faults under load, on a PostgreSQL cluster and a Redis server started here for the purpose.

    make faults                                   # the full run (about three minutes)
    .venv/bin/python scripts/faults.py --pg-outage 3 --redis-outage 1 --settle 1   # a quick run

Never touches a shared server: initdb makes a private PostgreSQL cluster in a
temporary directory (run as the postgres user when started as root) and a private
redis-server (no persistence) is started, each on its own port. Two instances of the
service (the project's launcher, two workers each) run on them, the second and HAProxy
(deploy/haproxy.cfg itself, as shipped) only for the last rows. Client threads send token requests
(client_secret_basic, and every fourth one a fresh private_key_jwt assertion) to the
first instance directly while, in turn:

  PostgreSQL restarted; PostgreSQL stopped for --pg-outage seconds (default 30);
  Redis restarted (down --redis-outage seconds); Redis flushed (FLUSHALL);
  one worker killed (SIGKILL).

For each: the time from the fault to the first 503, the number of 500s (must be 0),
the slowest /healthz (must answer 200 within the liveness probe's 2 s timeout) and
what /readyz said (503 while PostgreSQL is down),
the time from the dependency's return until requests succeed again (must be < 2 s),
and, after the Redis restart and the flush, whether a client assertion used before
is refused when replayed (it must be).

Then the same requests go through HAProxy while: SIGHUP to one instance (a reload: every
worker replaced in turn); SIGTERM to it (started again once it has exited); a rolling
restart (each in turn, the next once HAProxy has the previous back). No request may
fail: HAProxy's health checks (/readyz) take a stopping instance out, and a request that
meets a closing connection on the way is sent to the other (retry-on in
deploy/haproxy.cfg). Directly, stock granian's reload and stop can drop a request sent
on a kept-alive connection at the instant it is closed: that is the proxy's to cover.
Prints a table; exits 1 when a promise fails, 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opslib import (
    Instance,
    Load,
    OwnPostgres,
    OwnRedis,
    Participant,
    ShippedHAProxy,
    add_server_option,
    initdb_available,
    log,
    onboard,
    outcomes,
    prepare_database,
    print_table,
    service_env,
)

RECOVERY_LIMIT = 2.0
# /healthz answers within compose.yaml's health check timeout (2 s), whatever the dependencies do.
HEALTHZ_LIMIT_MS = 2000.0
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Result:
    fault: str
    outage: str = "—"
    first_503_s: float | None = None
    count_500: int = 0
    errors: str = ""
    recovery_s: float | None = None
    replay: str = "—"
    healthz_max_ms: float | None = None
    readyz: str = "—"
    ok: bool = True
    note: str = ""

    def row(self) -> list:
        def seconds(value):
            return "—" if value is None else f"{value:.2f}"

        healthz = "—" if self.healthz_max_ms is None else f"{self.healthz_max_ms:.0f}"
        return [self.fault, self.outage, seconds(self.first_503_s), self.count_500, self.errors or "none",
                seconds(self.recovery_s), self.replay, healthz, self.readyz, "PASS" if self.ok else "FAIL", self.note]


def mixed_requests(url: str, participant: Participant, issuer: str):
    token_url = f"{url}/oauth2/token"
    audience = f"{issuer}/oauth2/token"
    auth = (participant.client_id, participant.client_secret)

    def make(client: httpx.Client, n: int):
        if n % 4 == 0:
            data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": participant.assertion(audience)}
            return "assertion", client.post(token_url, data=data)
        return "basic", client.post(token_url, data={"grant_type": "client_credentials"}, auth=auth)

    return make


def health_probes(url: str):
    """A prober's requests: /healthz and /readyz in turn (each on its own kept-alive connection)."""

    def make(client: httpx.Client, n: int):
        path = "/healthz" if n % 2 else "/readyz"
        return path, client.get(f"{url}{path}")

    return make


def assertion_request(url: str, assertion: str) -> int:
    return httpx.post(f"{url}/oauth2/token", data={"grant_type": "client_credentials",
                                                  "client_assertion_type": ASSERTION_TYPE,
                                                  "client_assertion": assertion}, timeout=10).status_code


def measure(load: Load, fault: str, t_fault: float, t_back: float | None, t_end: float, *,
            outage: str = "—", expect_503: bool = False, probes: Load | None = None) -> Result:
    samples = [s for s in load.snapshot() if s.ended >= t_fault and s.started < t_end]
    result = Result(fault, outage)
    probe_ok = True
    if probes is not None:
        window = [s for s in probes.snapshot() if s.ended >= t_fault and s.started < t_end]
        healthz = [s for s in window if s.kind == "/healthz"]
        readyz = outcomes(s for s in window if s.kind == "/readyz")
        if healthz:
            result.healthz_max_ms = max(s.ended - s.started for s in healthz) * 1000
        result.readyz = " ".join(f"{k}:{v}" for k, v in sorted(readyz.items())) or "—"
        # Liveness answers at once and never fails, whatever the dependencies do.
        probe_ok = (bool(healthz) and all(s.outcome == "200" for s in healthz)
                    and result.healthz_max_ms < HEALTHZ_LIMIT_MS)
        if expect_503 and "503" not in readyz:
            probe_ok = False
    served_503 = sorted(s.ended for s in samples if s.outcome == "503")
    if served_503:
        result.first_503_s = served_503[0] - t_fault
    result.count_500 = sum(1 for s in samples if s.outcome.startswith("5") and s.outcome != "503")
    counts = outcomes(s for s in samples if s.outcome not in {"200", "503"})
    result.errors = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if t_back is not None:
        bad = [s.ended for s in samples if s.outcome != "200"]
        result.recovery_s = max(0.0, max(bad) - t_back) if bad else 0.0
    if t_back is not None:
        last_bad = max((s.ended for s in samples if s.outcome != "200"), default=t_fault)
        recovered = any(s.outcome == "200" and s.started > last_bad for s in samples)
        result.ok = result.count_500 == 0 and recovered and result.recovery_s < RECOVERY_LIMIT
    else:
        result.ok = result.count_500 == 0
    if not probe_ok:
        result.ok = False
        result.note = (result.note + " " if result.note else "") + "liveness/readiness probes failed their promise"
    if expect_503 and result.first_503_s is None:
        result.ok = False
        result.note = "no 503 seen during the outage"
    return result


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-outage", type=float, default=30.0, help="seconds PostgreSQL stays stopped")
    parser.add_argument("--redis-outage", type=float, default=3.0, help="seconds Redis stays down when restarted")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of load after each recovery")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("FAULTS_BASE_PORT", "18420")),
                        help="PostgreSQL on this port, Redis on +1, the instances on +2 and +3, HAProxy on +4")
    add_server_option(parser)
    args = parser.parse_args()
    if not initdb_available() or shutil.which("redis-server") is None or shutil.which("haproxy") is None:
        print("make faults needs PostgreSQL's server binaries (initdb, pg_ctl), redis-server and haproxy",
              file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ocen-faults-"))
    pg, redis = OwnPostgres(args.base_port, workdir), OwnRedis(args.base_port + 1, workdir)
    instance: Instance | None = None
    other: Instance | None = None
    proxy: ShippedHAProxy | None = None
    load: Load | None = None
    probes: Load | None = None
    results: list[Result] = []
    started = time.monotonic()
    try:
        log(f"private PostgreSQL on {args.base_port}, Redis on {args.base_port + 1}")
        pg.init()
        redis.start()
        with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE ocen")
        url = f"http://127.0.0.1:{args.base_port + 2}"
        proxy_url = f"http://127.0.0.1:{args.base_port + 4}"
        # The issuer is the proxy's address (a client assertion's audience); the instances
        # trust the proxy's X-Forwarded-For, and answer its health checks' Host.
        env = service_env(database_url=f"postgres://postgres@127.0.0.1:{args.base_port}/ocen", redis_url=redis.url,
                          issuer=proxy_url, extra={"AUTHSERVICE_TRUSTED_PROXIES": "127.0.0.1",
                                                   "ALLOWED_HOSTS": "authservice,127.0.0.1,localhost"})
        prepare_database(env)
        agent = onboard(env, "Faults Agent")
        instance = Instance("app1", args.base_port + 2, env, workers=2, server=args.server)
        other = Instance("app2", args.base_port + 3, env, workers=2, server=args.server)
        instance.start()
        load = Load(mixed_requests(url, agent, proxy_url), threads=args.threads, pause=0.002).start()
        probes = Load(health_probes(url), threads=1, pause=0.1).start()
        time.sleep(args.settle)
        warmup = outcomes(load.snapshot())
        if set(warmup) != {"200"}:
            raise RuntimeError(f"requests fail before any fault: {dict(warmup)}")

        # PostgreSQL restarted (fast shutdown: open connections terminated).
        t_fault = time.monotonic()
        pg.restart()
        t_back = time.monotonic()
        time.sleep(args.settle)
        results.append(measure(load, "PostgreSQL restarted", t_fault, t_back, time.monotonic(),
                               outage=f"{t_back - t_fault:.1f} s", probes=probes))

        # PostgreSQL stopped for the outage.
        t_fault = time.monotonic()
        pg.stop()
        time.sleep(args.pg_outage)
        pg.start()
        t_back = time.monotonic()
        time.sleep(args.settle)
        results.append(measure(load, "PostgreSQL stopped", t_fault, t_back, time.monotonic(),
                               outage=f"{args.pg_outage:g} s", expect_503=args.pg_outage >= 1, probes=probes))

        # Redis restarted: everything it held is gone.
        used = agent.assertion(f"{proxy_url}/oauth2/token")
        first_use = assertion_request(url, used)
        t_fault = time.monotonic()
        redis.stop()
        time.sleep(args.redis_outage)
        redis.start()
        t_back = time.monotonic()
        replay_status = assertion_request(url, used)
        time.sleep(args.settle)
        result = measure(load, "Redis restarted", t_fault, t_back, time.monotonic(), outage=f"{args.redis_outage:g} s",
                         probes=probes)
        result.replay = f"first {first_use}, replay {replay_status}"
        result.ok = result.ok and first_use == 200 and replay_status in {400, 401}
        results.append(result)

        # Redis flushed.
        used = agent.assertion(f"{proxy_url}/oauth2/token")
        first_use = assertion_request(url, used)
        t_fault = time.monotonic()
        redis.flushall()
        t_back = time.monotonic()
        replay_status = assertion_request(url, used)
        time.sleep(args.settle)
        result = measure(load, "Redis FLUSHALL", t_fault, t_back, time.monotonic(), probes=probes)
        result.replay = f"first {first_use}, replay {replay_status}"
        result.ok = result.ok and first_use == 200 and replay_status in {400, 401}
        results.append(result)

        # One worker killed.
        workers = instance.worker_pids()
        t_fault = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        respawned = wait_until(lambda: len(set(instance.worker_pids()) - set(workers)) == 1, 30)
        t_back = time.monotonic()
        time.sleep(args.settle)
        result = measure(load, "worker SIGKILL", t_fault, t_back, time.monotonic())
        result.recovery_s = t_back - t_fault
        lost = sum(1 for s in load.snapshot() if s.ended >= t_fault and s.outcome != "200")
        result.note = f"replacement worker after {t_back - t_fault:.2f} s; lost {lost} (bound: {args.threads})"
        result.ok = result.count_500 == 0 and respawned and lost <= args.threads
        results.append(result)


        # Through HAProxy as shipped: restarts as an orchestrator makes them, no request may fail.
        # (The second instance and HAProxy start only now: its health checks would add their
        # own /readyz to the first instance's work during the outages above.)
        load.stop()
        probes.stop()
        other.start()
        proxy = ShippedHAProxy(args.base_port + 4, instance, other, workdir)
        proxy.start()
        load = Load(mixed_requests(proxy_url, agent, proxy_url), threads=args.threads, pause=0.002).start()
        time.sleep(args.settle)
        # SIGHUP (a reload): every worker of app1 replaced in turn, no request lost.
        workers = instance.worker_pids()
        t_fault = time.monotonic()
        instance.signal(signal.SIGHUP)
        replaced = wait_until(lambda: (len(instance.worker_pids()) == len(workers)
                                       and not set(instance.worker_pids()) & set(workers)), 60)
        t_replaced = time.monotonic()
        time.sleep(args.settle)
        result = measure(load, "SIGHUP via HAProxy", t_fault, None, time.monotonic())
        failed = outcomes(s for s in load.snapshot() if s.ended >= t_fault and s.outcome != "200")
        result.errors = ", ".join(f"{k}: {v}" for k, v in sorted(failed.items()))
        result.note = (f"all {len(workers)} workers replaced after {t_replaced - t_fault:.2f} s" if replaced
                       else "workers not replaced within 60 s")
        result.ok = replaced and not failed and instance.process.poll() is None
        results.append(result)
        for fault, restarted in (("SIGTERM via HAProxy", [(instance, "app1")]),
                                 ("rolling restart via HAProxy", [(instance, "app1"), (other, "app2")])):
            t_fault = time.monotonic()
            timings = []
            for running, server in restarted:
                exited, back = proxy.restart(running, server)
                timings.append(f"{server} exited {exited:.2f} s after SIGTERM, back in rotation after {back:.1f} s")
            time.sleep(args.settle)
            samples = [s for s in load.snapshot() if s.ended >= t_fault]
            failed = outcomes(s for s in samples if s.outcome != "200")
            result = Result(fault, count_500=sum(1 for s in samples if s.outcome.startswith("5")))
            result.errors = ", ".join(f"{k}: {v}" for k, v in sorted(failed.items()))
            result.note = f"{sum(1 for s in samples if s.outcome == '200')} answered 200; " + "; ".join(timings)
            result.ok = not failed and sum(1 for s in samples if s.outcome == "200") > 0
            results.append(result)
    except Exception as exc:
        results.append(Result("faults ran", ok=False, note=f"{type(exc).__name__}: {exc}"[:300]))
        for running in (instance, other, proxy):
            if running:
                log(running.log_tail())
    finally:
        for running in (load, probes):
            if running:
                running.stop()
        if proxy:
            proxy.stop()
        for running in (instance, other):
            if running:
                running.cleanup()
        redis.stop()
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(f"make faults — two instances ({args.server}, 2 workers each) behind deploy/haproxy.cfg, "
                f"{args.threads} client threads, private PostgreSQL + Redis ({time.monotonic() - started:.0f} s)",
                ["fault", "outage", "first 503 (s)", "500s", "other non-200", "recovery (s)", "replay (status)",
                 "healthz max ms", "readyz", "result", "note"], [r.row() for r in results])
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
