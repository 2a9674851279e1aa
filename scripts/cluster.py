"""Several instances behind HAProxy, sharing PostgreSQL and Redis, and the checks they must pass.

    make cluster                               # three instances, then the checks
    .venv/bin/python scripts/cluster.py --instances 2 --load-seconds 3   # a quick run

Starts N instances (the project's launcher) on loopback ports behind
Debian's HAProxy (health checks on /readyz), sharing a temporary database on the given
PostgreSQL server (created and dropped here, never an existing one) and a private
redis-server. Then checks, and prints a table:

- a token issued by any instance verifies on every instance (introspection) and against
  every instance's JWKS;
- a revocation, a suspension and a client-authentication lockout made through one
  instance hold on every instance at once;
- killing one instance (SIGKILL, master and workers) under load through HAProxy loses
  only the requests in flight on it.

Exits 1 when a promise fails, 2 when it cannot run (no haproxy, no PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from jwcrypto import jwk, jws

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opslib import (
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
    service_env,
    temp_database,
    token_request,
)

HAPROXY_CFG = """\
global
    maxconn 2000
    log stdout format raw local0 info
defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    timeout check 2s
    option http-keep-alive
    retries 3
    option redispatch
frontend authservice
    bind 127.0.0.1:{port}
    default_backend instances
backend instances
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fastinter 500ms fall 3 rise 2
{servers}
"""


class HAProxy:
    def __init__(self, port: int, backends: list[Instance], workdir: Path) -> None:
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        servers = "\n".join(f"    server {b.name} 127.0.0.1:{b.port} check" for b in backends)
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(HAPROXY_CFG.format(port=port, servers=servers))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        subprocess.run(["haproxy", "-c", "-q", "-f", str(self.config)], check=True, timeout=30)
        self.logfile = self.config.with_name("haproxy.log")
        with open(self.logfile, "wb") as output:
            self.process = subprocess.Popen(["haproxy", "-db", "-f", str(self.config)], stdout=output,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("HAProxy did not come up")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Checks:
    def __init__(self) -> None:
        self.rows: list[list] = []

    def add(self, check: str, ok: bool, detail: str) -> bool:
        self.rows.append([check, "PASS" if ok else "FAIL", detail])
        log(f"{check}: {'PASS' if ok else 'FAIL'} {detail}")
        return ok

    @property
    def failed(self) -> bool:
        return any(row[1] == "FAIL" for row in self.rows)


def get_token(url: str, participant) -> str:
    response = httpx.post(f"{url}/oauth2/token", data={"grant_type": "client_credentials"},
                          auth=(participant.client_id, participant.client_secret), timeout=10)
    response.raise_for_status()
    return response.json()["access_token"]


def introspect(url: str, token: str, participant) -> bool:
    response = httpx.post(f"{url}/oauth2/introspect", data={"token": token},
                          auth=(participant.client_id, participant.client_secret), timeout=10)
    response.raise_for_status()
    return bool(response.json().get("active"))


def verifies_with_jwks(url: str, token: str) -> bool:
    keys = jwk.JWKSet.from_json(httpx.get(f"{url}/oauth2/jwks", timeout=10).text)
    signed = jws.JWS()
    signed.deserialize(token)
    try:
        signed.verify(keys)
    except jws.InvalidJWSSignature:
        return False
    return True


def check_tokens_everywhere(checks: Checks, instances: list[Instance], alice, bob) -> None:
    failures = []
    for issuer in instances:
        token = get_token(issuer.url, alice)
        for verifier in instances:
            if not introspect(verifier.url, token, bob):
                failures.append(f"{issuer.name}->{verifier.name} introspection")
            if not verifies_with_jwks(verifier.url, token):
                failures.append(f"{issuer.name}->{verifier.name} JWKS")
    n = len(instances)
    checks.add("token from any instance verifies everywhere", not failures,
               f"{n}x{n} introspections + JWKS checks" + (f"; failed: {', '.join(failures)}" if failures else ""))


def check_revocation(checks: Checks, instances: list[Instance], alice, bob) -> None:
    first, second = instances[0], instances[1]
    token = get_token(first.url, alice)
    active_before = [introspect(i.url, token, bob) for i in instances]
    response = httpx.post(f"{second.url}/oauth2/revoke", data={"token": token},
                          auth=(alice.client_id, alice.client_secret), timeout=10)
    revoked_at = time.monotonic()
    after = [introspect(i.url, token, bob) for i in instances]
    elapsed_ms = (time.monotonic() - revoked_at) * 1000
    ok = response.status_code == 200 and all(active_before) and not any(after)
    checks.add("revocation through one instance holds on all", ok,
               f"active on {sum(active_before)}/{len(instances)} before; issued by {first.name}, revoked via "
               f"{second.name} ({response.status_code}); inactive on "
               f"{sum(not a for a in after)}/{len(instances)} in {elapsed_ms:.0f} ms (first checks after revoke)")


def check_suspension(checks: Checks, instances: list[Instance], env: dict, carol, bob) -> None:
    tokens = {i.name: get_token(i.url, carol) for i in instances}
    active_before = [introspect(i.url, tokens[i.name], bob) for i in instances]
    manage(env, "suspend", carol.participant_id, "--reason", "cluster check")
    suspended_at = time.monotonic()
    refused, inactive = [], []
    for instance in instances:
        response = httpx.post(f"{instance.url}/oauth2/token", data={"grant_type": "client_credentials"},
                              auth=(carol.client_id, carol.client_secret), timeout=10)
        refused.append(response.status_code in {400, 401})
        inactive.append(not introspect(instance.url, tokens[instance.name], bob))
    elapsed_ms = (time.monotonic() - suspended_at) * 1000
    checks.add("suspension holds on all instances at once", all(active_before) and all(refused) and all(inactive),
               f"manage.py suspend (shared database); tokens active before on {sum(active_before)}; "
               f"new tokens refused on {sum(refused)}/{len(instances)}, "
               f"earlier tokens inactive on {sum(inactive)}/{len(instances)}, within {elapsed_ms:.0f} ms")


def check_lockout(checks: Checks, instances: list[Instance], dave, limit: int) -> None:
    first = instances[0]
    statuses = []
    for _ in range(limit):
        statuses.append(httpx.post(f"{first.url}/oauth2/token", data={"grant_type": "client_credentials"},
                                   auth=(dave.client_id, "wrong-secret"), timeout=10).status_code)
    locked = []
    for instance in instances:
        response = httpx.post(f"{instance.url}/oauth2/token", data={"grant_type": "client_credentials"},
                              auth=(dave.client_id, dave.client_secret), timeout=10)
        locked.append(response.status_code == 429 and "retry-after" in response.headers)
    checks.add("client-auth lockout through one instance holds on all", all(locked),
               f"{limit} bad secrets via {first.name} ({sorted(set(statuses))}); the right secret then refused "
               f"429 on {sum(locked)}/{len(instances)}")


def check_kill_under_load(checks: Checks, proxy: HAProxy, instances: list[Instance], alice, *, threads: int,
                          seconds: float) -> None:
    victim = instances[-1]
    load = Load(token_request(proxy.url, alice), threads=threads).start()
    time.sleep(seconds)
    in_flight_bound = threads
    killed_at = time.monotonic()
    victim.kill_all()
    time.sleep(seconds)
    load.stop()
    samples = load.snapshot()
    before = outcomes(s for s in samples if s.ended < killed_at)
    after = [s for s in samples if s.ended >= killed_at]
    lost = [s for s in after if s.outcome != "200"]
    late = [s for s in lost if s.started > killed_at + 0.05]
    counts = outcomes(after)
    ok = before.get("200", 0) > 0 and sum(before.values()) == before.get("200", 0) and len(lost) <= in_flight_bound \
        and not late and counts.get("200", 0) > 0
    if not ok:
        unusual = [line for line in proxy.logfile.read_text(errors="replace").splitlines() if " 200 " not in line]
        log("HAProxy log, lines other than 200s:\n" + "\n".join(unusual[-30:]))
        for instance in instances[:-1]:
            log(f"{instance.name} log:\n{instance.log_tail()}")
    checks.add("one instance killed under load: only its in-flight requests lost", ok,
               f"{threads} clients via HAProxy for {seconds:g}+{seconds:g} s; finished before the kill {dict(before)}; "
               f"after {dict(counts)}; lost {len(lost)} (bound: {in_flight_bound} in flight), "
               f"of them sent after the kill: {len(late)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="workers per instance")
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("CLUSTER_BASE_PORT", "18400")),
                        help="HAProxy on this port, Redis on +9, instances on +1, +2, ...")
    parser.add_argument("--admin-dsn", default=os.environ.get("CLUSTER_ADMIN_DSN",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="PostgreSQL server where a temporary database is created (and dropped)")
    parser.add_argument("--load-threads", type=int, default=8)
    parser.add_argument("--load-seconds", type=float, default=4.0, help="load before and after the kill")
    add_server_option(parser)
    add_db_prefix_option(parser, "ocen_cluster")
    args = parser.parse_args()
    if args.instances < 2:
        parser.error("--instances must be at least 2")
    if shutil.which("haproxy") is None:
        print("make cluster needs HAProxy: apt-get install haproxy", file=sys.stderr)
        return 2
    if shutil.which("redis-server") is None:
        print("make cluster needs redis-server: apt-get install redis-server", file=sys.stderr)
        return 2
    lockout_limit = 5
    workdir = Path(tempfile.mkdtemp(prefix="ocen-cluster-"))
    checks = Checks()
    instances: list[Instance] = []
    proxy = None
    redis = OwnRedis(args.base_port + 9, workdir)
    started = time.monotonic()
    try:
        with temp_database(args.admin_dsn, args.db_prefix) as database_url:
            redis.start()
            proxy_url = f"http://127.0.0.1:{args.base_port}"
            env = service_env(database_url=database_url, redis_url=redis.url, issuer=proxy_url,
                              extra={"AUTHSERVICE_AUTH_FAILURE_LIMIT": str(lockout_limit)})
            log(f"database {database_url.rsplit('/', 1)[1]}: migrate, bootstrap, onboard")
            prepare_database(env)
            alice, carol, dave = (onboard(env, f"Cluster {name}") for name in ("Alice", "Carol", "Dave"))
            bob = onboard(env, "Cluster Bob", "LENDER")
            for agent in (alice, carol):  # Bob is in their tokens' audience: Bob may introspect them
                manage(env, "grant_access", agent.participant_id, bob.participant_id, "--scopes", "ocen.loan")
            instances = [Instance(f"i{n + 1}", args.base_port + 1 + n, env, workers=args.workers,
                                  server=args.server)
                         for n in range(args.instances)]
            for instance in instances:
                instance.start(wait=False)
            for instance in instances:
                instance.wait_ready()
            proxy = HAProxy(args.base_port, instances, workdir)
            proxy.start()
            log(f"{len(instances)} instances up behind HAProxy at {proxy.url}")
            check_tokens_everywhere(checks, instances, alice, bob)
            check_revocation(checks, instances, alice, bob)
            check_suspension(checks, instances, env, carol, bob)
            check_lockout(checks, instances, dave, lockout_limit)
            check_kill_under_load(checks, proxy, instances, alice, threads=args.load_threads,
                                  seconds=args.load_seconds)
            if proxy:
                proxy.stop()
            for instance in instances:
                instance.cleanup()
    except Exception as exc:
        checks.add("cluster ran", False, f"{type(exc).__name__}: {exc}")
    finally:
        if proxy:
            proxy.stop()
        for instance in instances:
            instance.cleanup()
        redis.stop()
        if os.environ.get("CLUSTER_KEEP_LOGS"):
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(f"make cluster — {args.instances} {args.server} instances x {args.workers} worker(s) behind HAProxy, "
                f"shared PostgreSQL + Redis ({time.monotonic() - started:.0f} s)", ["check", "result", "detail"],
                checks.rows)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
