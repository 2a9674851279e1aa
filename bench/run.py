"""Benchmarks, side by side with node-oidc-provider, reported as ratios.

    make bench                      # the full run (a few minutes)
    .venv/bin/python bench/run.py --duration 2 --rounds 1 --cases token   # a quick look
    .venv/bin/python bench/run.py rounds    # steadiness and worker balance: bench/rounds.py

Starts this service through its launcher (python -m authservice.serve) on PostgreSQL in
production settings — by default the production logging too (access log on, INFO) —
under granian (the only server; --servers granian) and the peer
(node-oidc-provider, configured equivalently) on the same machine, loads each in turn
with wrk (alternating A/B/A/B), and prints a table with each figure's ratio to the peer
and the CPU each request cost the server's processes (utime + stime from /proc over the
run, divided by its requests: robust to other load on the machine). The results are
also written as JSON under bench/results/. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DB_NAME", "ocen_bench")
sys.path.insert(0, str(ROOT))

from ocen_sdk.jws import sign_compact  # noqa: E402
from ocen_sdk.key_loading import public_pem, thumbprint  # noqa: E402

_HANDED_OUT: set[int] = set()  # ports given to services that have not bound them yet


def free_port() -> int:
    """A free local port: any the kernel picks, or the first free one in ``BENCH_PORTS``
    ("18700-18799") on a machine where each bench runner has its own range."""
    low, _, high = os.environ.get("BENCH_PORTS", "").partition("-")
    candidates = range(int(low), int(high or low) + 1) if low else [0]
    for port in candidates:
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            if port:
                _HANDED_OUT.add(port)
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in BENCH_PORTS={os.environ['BENCH_PORTS']}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            pending.extend(int(child) for child in Path(f"/proc/{current}/task/{current}/children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants, seconds."""
    ticks = 0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, KiB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            continue
        pending.extend(int(child) for child in children)
    return total


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float | None = None  # server CPU per request, microseconds


def wrk(url: str, script: str, *, duration: int, connections: int, threads: int, env: dict,
        pid: int | None = None) -> WrkResult:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s",
               str(BENCH / "wrk" / script), url]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 60,
                            env={**os.environ, "BENCH_WRK_DIR": str(BENCH / "wrk"), "BENCH_THREADS": str(threads),
                                 **env}).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else None
    line = next(line for line in output.splitlines() if line.startswith("{"))
    if os.environ.get("BENCH_WRK_RAW"):
        print(output, file=sys.stderr)
    data = json.loads(line)
    return WrkResult(rps=data["requests"] / (data["duration_us"] / 1e6), p50_ms=data["p50_us"] / 1000,
                     p99_ms=data["p99_us"] / 1000, errors=data["non_2xx_3xx"] + data["socket_errors"],
                     requests=data["requests"],
                     cpu_us=cpu / data["requests"] * 1e6 if cpu is not None and data["requests"] else None)


@dataclass
class Row:
    case: str
    subject: str
    results: list[WrkResult] = field(default_factory=list)
    rss_kib: int = 0
    peer_rps: float | None = None
    note: str = ""

    @property
    def rps(self) -> float:
        """The median round (rounds are few and other load is bursty: one slow round moves a mean)."""
        return statistics.median(r.rps for r in self.results)

    def as_dict(self) -> dict:
        return {
            "case": self.case, "subject": self.subject, "rps": round(self.rps, 1),
            "p50_ms": round(statistics.mean(r.p50_ms for r in self.results), 2),
            "p99_ms": round(statistics.mean(r.p99_ms for r in self.results), 2),
            "errors": sum(r.errors for r in self.results), "requests": sum(r.requests for r in self.results),
            "rss_mib": round(self.rss_kib / 1024, 1),
            "ratio_to_peer": round(self.rps / self.peer_rps, 2) if self.peer_rps else None,
            "runs_rps": [round(r.rps, 1) for r in self.results], "note": self.note,
            "cpu_us_per_request": (round(statistics.median(r.cpu_us for r in self.results))
                                   if self.results and all(r.cpu_us is not None for r in self.results) else None),
        }


# --- The server -----------------------------------------------------------------------------

# The production configuration's logging (the access log, LOG_LEVEL's default), or none.
LOGGING = {"default": {"GUNICORN_ACCESS_LOG": "1", "LOG_LEVEL": "INFO"},
           "off": {"GUNICORN_ACCESS_LOG": "0", "LOG_LEVEL": "WARNING"}}


class Service:
    """The service through its launcher (python -m authservice.serve) under ``server``."""

    def __init__(self, *, workers: int, threads: int, server: str | None = None,
                 port: int | None = None, logging: str = "off") -> None:
        from authservice.serve import chosen_server

        server = server or chosen_server()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.threads = workers, threads
        self.server = server
        self.var = Path(tempfile.mkdtemp(prefix="ocen-bench-"))
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
            "AUTHSERVICE_KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32),
            "AUTHSERVICE_ISSUER": self.url,
            "AUTHSERVICE_VAR_DIR": str(self.var),
            "PROMETHEUS_MULTIPROC_DIR": str(self.var / "metrics"),
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", ""),
            "PYTHONWARNINGS": "ignore",
            "AUTHSERVICE_SERVER": server,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(workers),
            "GUNICORN_THREADS": str(threads),
            **LOGGING[logging],
        }
        self.process: subprocess.Popen | None = None

    def manage(self, *args: str) -> str:
        return subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              check=True, timeout=600).stdout

    def start(self) -> None:
        self.log = open(self.var / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([PY, "-m", "authservice.serve"], cwd=ROOT, env=self.env, start_new_session=True,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for(f"{self.url}/readyz")
        except RuntimeError:
            print((self.var / "server.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            raise

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.var, ignore_errors=True)


class Peer:
    def __init__(self, clients: list[dict], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_jwk = {**jwk.JWK.from_pyca(key).export_private(as_dict=True), "kid": "peer", "use": "sig",
                       "alg": "RS256"}
        self.config = {"port": self.port, "clients": clients, "jwk": private_jwk, "ttl": 900}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if not (BENCH / "node_modules" / "oidc-provider").exists():
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=BENCH, check=True,
                           timeout=600)
        self.process = subprocess.Popen(["node", str(BENCH / "peer" / "oidc_server.mjs")], cwd=BENCH,
                                        env={**os.environ, "PEER_CONFIG": json.dumps(self.config),
                                             "NODE_ENV": "production"},
                                        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(f"{self.url}/.well-known/openid-configuration")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


@contextmanager
def bench_database(name: str = DB_NAME):
    """A fresh PostgreSQL database ``name`` for the run (dropped first and afterwards)."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def basic(client_id: str, secret: str) -> str:
    return base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# --- Cases -----------------------------------------------------------------------------------------

def onboard(service: Service, name: str, role: str, key) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write(public_pem(key))
    try:
        return json.loads(service.manage("onboard", "--org-name", name, "--role", role, "--base-url",
                                         f"https://{name.lower().replace(' ', '-')}.example", "--public-key",
                                         handle.name, "--json"))
    finally:
        os.unlink(handle.name)


def subject(service: Service, services: list[Service]) -> str:
    return f"authservice/{service.server}" if len(services) > 1 else "authservice"


def case_token(args, services: list[Service], peer: Peer | None, agent: dict) -> list[Row]:
    """Every server, then the peer, round after round (the same machine noise for each)."""
    case = "token, client_secret_basic"
    ours = [Row(case, subject(service, services)) for service in services]
    theirs = Row(case, "node-oidc-provider")
    ours_env = {"BENCH_BASIC": basic(agent["client_id"], agent["client_secret"])}
    if peer is not None:
        peer_client = peer.config["clients"][0]
        peer_env = {"BENCH_BASIC": basic(peer_client["client_id"], peer_client["client_secret"])}
    for _ in range(args.rounds):
        for service, row in zip(services, ours, strict=True):
            row.results.append(wrk(f"{service.url}/oauth2/token", "token_basic.lua", env=ours_env,
                                   pid=service.process.pid, **args.load))
            row.rss_kib = max(row.rss_kib, rss_kib(service.process.pid))
        if peer is not None:
            theirs.results.append(wrk(f"{peer.url}/token", "token_basic.lua", env=peer_env, pid=peer.process.pid,
                                      **args.load))
            theirs.rss_kib = max(theirs.rss_kib, rss_kib(peer.process.pid))
    if peer is None:
        return ours
    for row in [*ours, theirs]:
        row.peer_rps = theirs.rps
    return [*ours, theirs]


def case_assertion(args, service: Service, agent: dict, agent_key, peer_rps: float | None,
                   label: str = "authservice") -> list[Row]:
    row = Row("token, private_key_jwt", label, peer_rps=peer_rps,
              note="peer: client_secret_basic figure (private_key_jwt not configured there)")
    token_url = f"{service.url}/oauth2/token"
    count = min(100_000, int(args.assertions_per_second * args.duration) + 1000)
    kid = thumbprint(agent_key)
    for _ in range(args.rounds):
        # Every assertion is single-use: each round spends a freshly signed file.
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
            now = int(time.time())
            for _ in range(count):
                claims = {"iss": agent["client_id"], "sub": agent["client_id"], "aud": token_url, "iat": now,
                          "exp": now + 280, "jti": uuid.uuid4().hex}
                assertion = sign_compact(json.dumps(claims).encode(), agent_key, alg="ES256", kid=kid)
                handle.write("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
                             f"client-assertion-type%3Ajwt-bearer&client_assertion={assertion}\n")
        try:
            row.results.append(wrk(token_url, "token_assertion.lua", env={"BENCH_ASSERTIONS": handle.name},
                                   pid=service.process.pid, **args.load))
        finally:
            os.unlink(handle.name)
    row.rss_kib = rss_kib(service.process.pid)
    return [row]


def case_registry(args, service: Service, agent: dict, lender: dict, label: str = "authservice") -> list[Row]:
    token = httpx.post(f"{service.url}/oauth2/token", data={"grant_type": "client_credentials",
                                                            "resource": "urn:ocen:registry"},
                       auth=(agent["client_id"], agent["client_secret"])).json()["access_token"]
    path = f"{service.url}/registry/v1/participants/{lender['participant_id']}"
    etag = httpx.get(path, headers={"Authorization": f"Bearer {token}"}).headers["etag"]
    rows = []
    for case, tag in (("registry GET participant, 200", ""), ("registry GET participant, 304", etag)):
        row = Row(case, label, note="no peer equivalent")
        for _ in range(args.rounds):
            row.results.append(wrk(path, "registry_get.lua", env={"BENCH_TOKEN": token, "BENCH_ETAG": tag},
                                   pid=service.process.pid, **args.load))
        row.rss_kib = rss_kib(service.process.pid)
        rows.append(row)
    return rows


def case_growth(args, service: Service, agent: dict, lender: dict, dsn: str, empty_rps: float,
                peer_rps: float | None, registry_rps: float | None) -> tuple:
    """Throughput after 1,000,000 issued tokens, and list latency with many participants.

    Issuing a token stores nothing, so a million issued tokens leave no trace; what
    does grow is the revocation list, consulted when a token is presented. It is
    seeded with a million revoked (still unexpired) tokens, then the token endpoint
    and the token-checking registry API are measured again.
    """
    info: dict = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute(
            "INSERT INTO authservice_revokedtoken (jti, client_id, expires_at, revoked_at) "
            "SELECT gen_random_uuid(), %s, now() + interval '15 minutes', now() "
            "FROM generate_series(1, %s) g", (agent["client_id"], args.stored_tokens))
        conn.execute("ANALYZE authservice_revokedtoken")
        info["seed_revocations_seconds"] = round(time.monotonic() - started, 1)
        info["revoked_tokens"] = args.stored_tokens
        info["revocation_table_mib"] = round(conn.execute(
            "SELECT pg_total_relation_size('authservice_revokedtoken')").fetchone()[0] / 2**20, 1)
        info["index_sizes_mib"] = {name: round(size / 2**20, 1) for name, size in conn.execute(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
            "WHERE relname = 'authservice_revokedtoken'").fetchall()}
        info["token_rows_written_per_token"] = 0
    row = Row(f"token, {args.stored_tokens:,} revoked tokens stored", "authservice", peer_rps=peer_rps,
              note=f"empty: {empty_rps:.0f}/s")
    env = {"BENCH_BASIC": basic(agent["client_id"], agent["client_secret"])}
    for _ in range(args.rounds):
        row.results.append(wrk(f"{service.url}/oauth2/token", "token_basic.lua", env=env, **args.load))
    row.rss_kib = rss_kib(service.process.pid)
    info["token_growth_ratio"] = round(row.rps / empty_rps, 2)
    growth_rows = [row]
    if registry_rps:
        token = httpx.post(f"{service.url}/oauth2/token", data={"grant_type": "client_credentials",
                                                                "resource": "urn:ocen:registry"},
                           auth=(agent["client_id"], agent["client_secret"])).json()["access_token"]
        registry = Row(f"registry GET, {args.stored_tokens:,} revoked", "authservice",
                       note=f"empty: {registry_rps:.0f}/s")
        path = f"{service.url}/registry/v1/participants/{lender['participant_id']}"
        for _ in range(args.rounds):
            registry.results.append(wrk(path, "registry_get.lua", env={"BENCH_TOKEN": token, "BENCH_ETAG": ""},
                                        **args.load))
        registry.rss_kib = rss_kib(service.process.pid)
        info["registry_growth_ratio"] = round(registry.rps / registry_rps, 2)
        growth_rows.append(registry)

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO registry_organisation (org_id, legal_name, website, contact_email, contact_phone, "
            "created_at, updated_at) SELECT gen_random_uuid(), 'Bench Org ' || g, '', '', '', now(), now() "
            "FROM generate_series(1, %s) g", (args.participants,))
        conn.execute(
            "INSERT INTO registry_participant (participant_id, organisation_id, role, status, status_reason, "
            "status_changed_at, created_at, updated_at) SELECT gen_random_uuid(), o.id, 'LENDER', 'APPROVED', '', "
            "now(), now(), now() FROM registry_organisation o WHERE o.legal_name LIKE 'Bench Org %%'")
        conn.execute("ANALYZE")
    token = httpx.post(f"{service.url}/oauth2/token", data={"grant_type": "client_credentials",
                                                            "resource": "urn:ocen:registry"},
                       auth=(agent["client_id"], agent["client_secret"])).json()["access_token"]
    list_url = f"{service.url}/registry/v1/participants?page=100"
    cold = []
    for _ in range(5):  # after a registry change nothing is cached: the first request renders
        scope = f"bench.{uuid.uuid4().hex[:8]}"
        service.manage("define_scope", scope)
        service.manage("grant_access", agent["participant_id"], lender["participant_id"], "--scopes", scope)
        started = time.monotonic()
        httpx.get(list_url, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        cold.append((time.monotonic() - started) * 1000)
    info["registry_list_cold_ms_median"] = round(statistics.median(cold), 1)
    listing = Row(f"registry list, {args.participants:,} participants", "authservice",
                  note="page 100 of 50; steady state (rendered once per registry change)")
    for _ in range(args.rounds):
        listing.results.append(wrk(list_url, "registry_get.lua",
                                   env={"BENCH_TOKEN": token, "BENCH_ETAG": ""}, **args.load))
    listing.rss_kib = rss_kib(service.process.pid)
    return [*growth_rows, listing], info


# --- Report ----------------------------------------------------------------------------------------

def print_table(rows: list[dict], verify_rows: list[dict], info: dict, meta: dict) -> None:
    print(f"\nOCEN Auth Service benchmarks — {meta['started']} — {meta['machine']}")
    print(f"load: wrk -t{meta['wrk_threads']} -c{meta['connections']} -d{meta['duration']}s x {meta['rounds']} "
          f"rounds (A/B alternating, median round); service: {meta['servers']} x {meta['workers']} workers "
          f"x {meta['gunicorn_threads']} thread(s), logging "
          f"{meta['logging']}, PostgreSQL")
    header = (f"{'case':<38} {'server':<25} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
              f"{'RSS MiB':>8} {'CPU µs/req':>10} {'vs peer':>8}")
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row['ratio_to_peer']:.2f}x" if row["ratio_to_peer"] else "—"
        cpu = f"{row['cpu_us_per_request']}" if row.get("cpu_us_per_request") else "—"
        print(f"{row['case']:<38} {row['subject']:<25} {row['rps']:>8.0f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
              f"{row['errors']:>6} {row['rss_mib']:>8.1f} {cpu:>10} {ratio:>8}")
    if verify_rows:
        print("\nprovider-side verification per request, in-process (µs per call)")
        print(f"{'alg':<7} {'raw verify':>11} {'signature check':>16} {'full (token seen)':>18} {'overhead':>9} "
              f"{'full (new token)':>17} {'overhead':>9}")
        for row in verify_rows:
            print(f"{row['alg']:<7} {row['raw_us']:>11.1f} {row['jws_us']:>16.1f} {row['full_us']:>18.1f} "
                  f"{row['overhead']:>8.2f}x {row['first_use_us']:>17.1f} {row['first_use_overhead']:>8.2f}x")
        print("full = token, caller's standing, signature, binding (method, target, provider, iat) and replay "
              "claim, in microseconds;\noverhead = full / (raw token verify + raw signature verify)")
    if info:
        print("\n" + json.dumps(info, indent=2))


def main() -> int:
    if sys.argv[1:2] == ["rounds"]:
        from bench.rounds import main as rounds_main

        return rounds_main(sys.argv[2:])
    if "--scale" in sys.argv[1:]:  # the scale mode has its own options (bench/scale.py)
        from bench.scale import main as scale_main

        return scale_main([arg for arg in sys.argv[1:] if arg != "--scale"])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds per case")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", str(os.cpu_count()))))
    parser.add_argument("--gunicorn-threads", type=int, default=int(os.environ.get("BENCH_GTHREADS", "1")))
    from authservice.serve import chosen_server

    parser.add_argument("--servers", default=os.environ.get("BENCH_SERVERS", chosen_server()),
                        help="the server the launcher runs the service under: granian (the only one)")
    parser.add_argument("--logging", choices=sorted(LOGGING), default="default",
                        help="default: the production configuration's (access log on, INFO); off: none")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "0")),
                        help="first of the ports used (the servers, then the peer); 0: any free ports")
    parser.add_argument("--cases", default="token,assertion,registry,verify,growth")
    parser.add_argument("--stored-tokens", type=int, default=1_000_000)
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--assertions-per-second", type=int, default=2500)
    parser.add_argument("--no-peer", action="store_true", help="skip node-oidc-provider")
    parser.add_argument("--output", default=str(BENCH / "results"))
    args = parser.parse_args()
    args.load = {"duration": args.duration, "connections": args.connections, "threads": args.wrk_threads}
    cases = set(args.cases.split(","))
    for tool in ("wrk",) + (() if args.no_peer else ("node",)):
        if shutil.which(tool) is None:
            print(f"bench needs {tool}: apt-get install {tool}", file=sys.stderr)
            return 2
    meta = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} cores, {os.uname().machine}", "duration": args.duration,
            "rounds": args.rounds, "connections": args.connections, "wrk_threads": args.wrk_threads,
            "workers": args.workers, "gunicorn_threads": args.gunicorn_threads,
            "servers": args.servers, "logging": args.logging}
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = set(servers) - {"granian"}
    if unknown or not servers:
        parser.error(f"--servers: granian (the only server), not {', '.join(sorted(unknown)) or 'nothing'}")
    rows: list[Row] = []
    verify_rows: list[dict] = []
    info: dict = {}
    with bench_database() as dsn:
        services = [Service(workers=args.workers, threads=args.gunicorn_threads,
                            server=name, port=args.port + n if args.port else None, logging=args.logging)
                    for n, name in enumerate(servers)]
        service = services[0]  # migrations, onboarding, and the cases that change the database
        for other in services[1:]:  # one database: one set of keys
            for name in ("DJANGO_SECRET_KEY", "AUTHSERVICE_KEY_ENCRYPTION_KEY"):
                other.env[name] = service.env[name]
        service.manage("migrate", "--noinput")
        service.manage("bootstrap", "--no-admin")
        agent_key, lender_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        agent = onboard(service, "Bench Agent", "LOAN_AGENT", agent_key)
        lender = onboard(service, "Bench Lender", "LENDER", lender_key)
        service.manage("define_scope", "ocen.loan")
        service.manage("grant_access", agent["participant_id"], lender["participant_id"], "--scopes", "ocen.loan")
        peer = Peer([{"client_id": "bench-client", "client_secret": secrets.token_urlsafe(32)}],
                    port=args.port + len(services) if args.port else None)
        try:
            for each in services:
                each.start()
            if not args.no_peer:
                peer.start()
            peer_rps = None
            if "token" in cases:
                rows += case_token(args, services, None if args.no_peer else peer, agent)
                if not args.no_peer:
                    peer_rps = rows[-1].rps
            for each in services:
                label = subject(each, services)
                if "assertion" in cases:
                    rows += case_assertion(args, each, agent, agent_key, peer_rps, label)
                if "registry" in cases:
                    rows += case_registry(args, each, agent, lender, label)
            if "verify" in cases:
                from bench.verify import run as run_verify

                verify_rows = run_verify(iterations=max(200, args.duration * 200))
            if "growth" in cases:
                empty = next((r.rps for r in rows if r.case == "token, client_secret_basic"
                              and r.subject == subject(service, services)), None)
                if empty is None:
                    env = {"BENCH_BASIC": basic(agent["client_id"], agent["client_secret"])}
                    empty = wrk(f"{service.url}/oauth2/token", "token_basic.lua", env=env, **args.load).rps
                registry_rps = next((r.rps for r in rows if r.case == "registry GET participant, 200"
                                     and r.subject == subject(service, services)), None)
                growth_rows, info = case_growth(args, service, agent, lender, dsn, empty, peer_rps, registry_rps)
                rows += growth_rows
        finally:
            for each in services:
                each.stop()
            peer.stop()
    table = [row.as_dict() for row in rows]
    print_table(table, verify_rows, info, meta)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "rows": table, "verification": verify_rows, "growth": info}
    stamp = meta["started"].replace(":", "").replace("-", "")
    (output / f"bench-{stamp}.json").write_text(json.dumps(payload, indent=2))
    (output / "latest.json").write_text(json.dumps(payload, indent=2))
    return 0 if all(row["errors"] == 0 for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
