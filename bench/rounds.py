"""Rounds against running servers: how steady is throughput, and where do connections go?

    .venv/bin/python bench/run.py rounds                 # ten 4 s rounds, every variant
    .venv/bin/python bench/rounds.py --rounds 3 --variants granian,log-json --duration 2

Each variant is one server started once (on a temporary database made here) and kept
running; then, round after round, each variant in turn gets `wrk -c8` for --duration
seconds on the token endpoint (client_secret_basic), so every variant sees the same
machine noise. Per round it records tokens/s, the CPU ticks each worker process used
(connections piled on one worker show as ticks on one worker only) and the CPU the
rest of the machine used meanwhile (wrk and any other load). It prints, per variant,
min / median / max tokens/s and the spread (max - min) / median; a spread above 20%
is flagged, with its likely cause: skewed worker ticks (imbalance) or other load.

Variants (--variants), each the service through its launcher (granian):
  granian        1 thread per worker, logging off (access log off, WARNING), like bench/run.py
  granian-2t     2 threads per worker, logging off
  granian-log    the default logging (text, access log on, INFO): the default configuration
  log-json       LOG_FORMAT=json, access log on, INFO
granian-log and log-json are compared with "granian" for the logging cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PY, basic, free_port, wait_for, wrk  # noqa: E402

ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
SPREAD_LIMIT = 0.20
LOGGING_OFF = {"GUNICORN_ACCESS_LOG": "0", "LOG_LEVEL": "WARNING"}
LOGGING_DEFAULT = {"GUNICORN_ACCESS_LOG": "1", "LOG_LEVEL": "INFO", "LOG_FORMAT": "text"}
VARIANTS = {
    "granian": ("granian", [], {**LOGGING_OFF, "GUNICORN_THREADS": "1"}),
    "granian-2t": ("granian", [], {**LOGGING_OFF, "GUNICORN_THREADS": "2"}),
    "granian-log": ("granian", [], {**LOGGING_DEFAULT, "GUNICORN_THREADS": "1"}),
    "log-json": ("granian", [], {**LOGGING_DEFAULT, "LOG_FORMAT": "json", "GUNICORN_THREADS": "1"}),
}


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def machine_busy_ticks() -> int:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4]  # all but idle and iowait


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


@dataclass
class Round:
    rps: float
    errors: int
    worker_ticks: list[int]
    other_ticks: int


@dataclass
class Server:
    name: str
    kind: str
    extra_args: list[str]
    extra_env: dict
    env: dict
    workers: int
    port: int = 0
    duration: float = 4.0
    process: subprocess.Popen | None = None
    rounds: list[Round] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = self.port or free_port()
        self.var = Path(tempfile.mkdtemp(prefix=f"ocen-rounds-{self.name}-"))
        env = {**self.env, **self.extra_env, "AUTHSERVICE_VAR_DIR": str(self.var),
               "PROMETHEUS_MULTIPROC_DIR": str(self.var / "metrics"),
               "GUNICORN_BIND": f"127.0.0.1:{self.port}", "GUNICORN_WORKERS": str(self.workers)}
        command = [PY, "-m", "authservice.serve", *self.extra_args]
        self.log = open(self.var / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        wait_for(f"{self.url}/readyz", timeout=60)

    def worker_pids(self) -> list[int]:
        return sorted(children(self.process.pid))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.log.close()
        shutil.rmtree(self.var, ignore_errors=True)


def run_round(server: Server, basic_auth: str, args) -> Round:
    pids = server.worker_pids()
    before = [cpu_ticks(pid) for pid in pids]
    busy_before = machine_busy_ticks()
    try:
        result = wrk(f"{server.url}/oauth2/token", "token_basic.lua", duration=args.duration,
                     connections=args.connections, threads=args.wrk_threads, env={"BENCH_BASIC": basic_auth})
    except subprocess.CalledProcessError as exc:  # a failed round is reported, not fatal to the others
        alive = server.process.poll() is None
        print(f"  wrk failed against {server.name} (server {'running' if alive else 'exited'}): "
              f"{(exc.stderr or exc.stdout or '').strip()[-300:]}", file=sys.stderr, flush=True)
        if not alive:
            print((server.var / "server.log").read_text(errors="replace")[-2000:], file=sys.stderr)
        return Round(0.0, 1, [0 for _ in pids], 0)
    ticks = [cpu_ticks(pid) - start for pid, start in zip(pids, before, strict=True)]
    other = machine_busy_ticks() - busy_before - sum(ticks)
    return Round(result.rps, result.errors, ticks, other)


def summarize(server: Server) -> dict:
    rates = [r.rps for r in server.rounds]
    median = statistics.median(rates)
    spread = (max(rates) - min(rates)) / median if median else 0.0
    skewed = [r for r in server.rounds if len(r.worker_ticks) > 1 and sum(r.worker_ticks)
              and min(r.worker_ticks) < 0.25 * max(r.worker_ticks)]
    cause = ""
    if spread > SPREAD_LIMIT:
        cause = (f"imbalance: {len(skewed)}/{len(rates)} rounds with one worker under a quarter of another's CPU"
                 if skewed else "no worker imbalance: other load on the machine (see other CPU)")
    cpu = [sum(r.worker_ticks) / os.sysconf("SC_CLK_TCK") / (r.rps * server.duration) * 1e6
           for r in server.rounds if r.rps]
    return {"variant": server.name, "cpu_us_per_request": round(statistics.median(cpu)) if cpu else None,
            "min": round(min(rates)), "median": round(median), "max": round(max(rates)),
            "spread": round(spread, 3), "errors": sum(r.errors for r in server.rounds),
            "skewed_rounds": len(skewed), "flag": cause,
            "rounds": [{"rps": round(r.rps), "worker_ticks": r.worker_ticks, "other_ticks": r.other_ticks}
                       for r in server.rounds]}


def onboard_agent(env: dict) -> dict:
    from ocen_sdk.key_loading import public_pem

    key = ec.generate_private_key(ec.SECP256R1())
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write(public_pem(key))
    try:
        output = subprocess.run([PY, "manage.py", "onboard", "--org-name", "Rounds Agent", "--role", "LOAN_AGENT",
                                 "--base-url", "https://rounds-agent.example", "--public-key", handle.name, "--json"],
                                cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=300).stdout
    finally:
        os.unlink(handle.name)
    return json.loads(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk round")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--variants", default="granian,granian-2t,granian-log,log-json")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "0")),
                        help="first port of the variants' servers (one each); 0: any free ports")
    parser.add_argument("--db-prefix", default="ocen_rounds", help="name prefix of the temporary database")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None:
        print("needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    database = f"{args.db_prefix}_{os.getpid()}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    servers: list[Server] = []
    try:
        env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}", "DJANGO_DEBUG": "0",
               "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
               "AUTHSERVICE_KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32), "AUTHSERVICE_ISSUER": "http://127.0.0.1",
               "REDIS_URL": os.environ.get("BENCH_REDIS_URL", ""), "PYTHONWARNINGS": "ignore"}
        for step in (["migrate", "--noinput"], ["bootstrap", "--no-admin"]):
            subprocess.run([PY, "manage.py", *step], cwd=ROOT, env=env, capture_output=True, check=True, timeout=600)
        agent = onboard_agent(env)
        basic_auth = basic(agent["client_id"], agent["client_secret"])
        for name in names:
            kind, extra_args, extra_env = VARIANTS[name]
            server = Server(name, kind, extra_args, extra_env, env, args.workers,
                            port=args.port + len(servers) if args.port else 0, duration=args.duration)
            server.start()
            servers.append(server)
        load = open("/proc/loadavg").read().split()[:3]  # noqa: SIM115
        print(f"load average before: {' '.join(load)}; {os.cpu_count()} cores; {args.rounds} rounds x "
              f"{args.duration} s, wrk -t{args.wrk_threads} -c{args.connections}, {args.workers} workers each",
              flush=True)
        for number in range(1, args.rounds + 1):
            for server in servers:
                server.rounds.append(run_round(server, basic_auth, args))
            print(f"round {number}: " + "  ".join(
                f"{s.name} {s.rounds[-1].rps:.0f} ({'/'.join(map(str, s.rounds[-1].worker_ticks))})" for s in servers),
                flush=True)
    finally:
        for server in servers:
            server.stop()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    summaries = [summarize(server) for server in servers]
    print(f"\ntoken endpoint, tokens/s over {args.rounds} rounds (A/B/... interleaved, one running server each)")
    header = (f"{'variant':<12} {'min':>6} {'median':>7} {'max':>6} {'spread':>7} {'errors':>6} {'CPU µs/req':>10}  "
              "worker CPU ticks per round")
    print(header)
    print("-" * len(header))
    for summary in summaries:
        ticks = " ".join("/".join(map(str, r["worker_ticks"])) for r in summary["rounds"])
        print(f"{summary['variant']:<12} {summary['min']:>6} {summary['median']:>7} {summary['max']:>6} "
              f"{summary['spread']:>6.0%} {summary['errors']:>6} {summary['cpu_us_per_request'] or '—':>10}  {ticks}")
    for summary in summaries:
        if summary["flag"]:
            print(f"  ! {summary['variant']}: spread {summary['spread']:.0%} > {SPREAD_LIMIT:.0%} — {summary['flag']}")
    others = [r["other_ticks"] for s in summaries for r in s["rounds"]]
    print(f"CPU used outside the measured server per round (wrk + everything else), ticks: median "
          f"{statistics.median(others):.0f}, max {max(others)} (100 ticks = one core-second)")
    by_name = {s["variant"]: s["median"] for s in summaries}
    if "granian" in by_name:
        base = by_name["granian"]
        print("\nratios of medians to 'granian' (logging off): " + ", ".join(
            f"{name} {median / base:.2f}x" for name, median in by_name.items() if name != "granian"))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "rounds-latest.json").write_text(json.dumps({"args": vars(args), "variants": summaries}, indent=2))
    return 0 if all(s["errors"] == 0 for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
