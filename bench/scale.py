"""The bench's scale mode: the registry at 1k, 10k and 100k participants, side by side.

    make bench BENCH_ARGS="--scale --participants 1000,10000,100000"
    .venv/bin/python -m bench.scale --participants 1000,10000,100000 --database ocen_bench_scale

Fills one PostgreSQL database (dropped and created) in steps up to each size, with
exactly the rows the services write for an onboarded participant (organisation,
OAuth client with a hashed secret, approved participant, endpoint, validated key,
registry mapping, and the three audit events of onboarding, chained and keyed as
``record_event`` chains them), bulk-inserted. At each size the service runs under
granian, restarted so nothing is cached, and every figure is taken: reads under
wrk (the median of ``--rounds`` runs), a cursor crawl of every page, writes through
the services, the audit verification, incremental and full, and the token endpoint
in process (CPU per request, for a cached and an uncached client).

Random reads, searches and random clients pick from a hot set of ``--hot-set``
participants (1,000) at every size, and wrk passes run until every worker has met all of
it (a pass with almost no cache misses, read from /metrics) before they are measured:
what grows with N there is the cost of a lookup, not the share of a working set the
cache holds (which depends on the working set and ``*_CACHE_MAX_BYTES``, not on N). The
uncached paths are in-process figures: CPU per request of the Django process and of
PostgreSQL (search), or of the Django process (token). One client and random clients
alternate (A/B, ``--rounds`` pairs) and their ratio is the median of the pairs' ratios.
Every wrk figure also records the service's CPU per request (workers and their
PostgreSQL backends), which load from elsewhere on the machine changes far less than
req/s. The table shows each figure at every size and its growth from the smallest to
the largest (a cost: for req/s, smallest/largest; for times, largest/smallest). Nothing
here asserts a time.

``--writers`` measures the audit chain head, which every registry write locks:
registry writes per second with 1, 2, 4, 8 concurrent writers at the largest size.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PY, Service, bench_database, onboard, rss_kib, wrk  # noqa: E402

FILL_MARK = "Scale Org"
CRAWL_PAGE_SIZE = 200


# --- Inside a Django process (run as a subprocess with the service's environment) ---------------

def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authservice.settings")
    import django

    django.setup()


def inside_fill(target: int, credentials_path: str, batch: int = 2000) -> dict:
    """Bring the filled participants up to ``target``; append their client credentials."""
    _django()
    from cryptography.hazmat.primitives.asymmetric import ec
    from django.db import transaction
    from django.utils import timezone
    from oauth2_provider.models import get_application_model

    from authservice.clients import generate_client_secret
    from authservice.conf import authservice_settings
    from ocen_sdk.key_loading import public_pem
    from registry.audit import audit_keys, link_digest
    from registry.key_material import parse_public_key
    from registry.models import (
        AuditAction,
        AuditChainHead,
        AuditEvent,
        Endpoint,
        Organisation,
        Participant,
        PublicKey,
        ResourceMapping,
        Role,
        Status,
    )

    os.nice(5)  # a long fill yields to whatever else runs on the machine
    Client = get_application_model()
    have = Organisation.objects.filter(legal_name__startswith=FILL_MARK).count()
    roles = [Role.LENDER, Role.LOAN_AGENT, Role.KYC_PARTNER, Role.DISBURSEMENT_PARTNER]
    started = time.monotonic()
    key = audit_keys()[0]
    with open(credentials_path, "a") as credentials:
        for first in range(have, target, batch):
            numbers = range(first, min(first + batch, target))
            now = timezone.now()
            secrets_ = [generate_client_secret() for _ in numbers]
            with transaction.atomic():
                orgs = Organisation.objects.bulk_create([
                    Organisation(legal_name=f"{FILL_MARK} {n:07d}", website=f"https://scale-{n}.example",
                                 contact_email=f"ops@scale-{n}.example") for n in numbers])
                clients = Client.objects.bulk_create([
                    Client(name=f"{org.legal_name} / {roles[n % 4]}", client_type=Client.CLIENT_CONFIDENTIAL,
                           authorization_grant_type=Client.GRANT_CLIENT_CREDENTIALS, client_secret=secret,
                           hash_client_secret=True, redirect_uris="")
                    for n, org, secret in zip(numbers, orgs, secrets_, strict=True)])
                participants = Participant.objects.bulk_create([
                    Participant(organisation=org, role=roles[n % 4], status=Status.APPROVED, client=client,
                                status_changed_at=now, approved_at=now)
                    for n, org, client in zip(numbers, orgs, clients, strict=True)])
                urls = [f"https://api.scale-{n}.example/ocen" for n in numbers]
                Endpoint.objects.bulk_create([Endpoint(participant=p, url=url)
                                              for p, url in zip(participants, urls, strict=True)])
                parsed = [parse_public_key(public_pem(ec.generate_private_key(ec.SECP256R1()))) for _ in numbers]
                PublicKey.objects.bulk_create([
                    PublicKey(participant=p, kid=k.kid, thumbprint=k.thumbprint, alg=k.alg, kty=k.kty,
                              source_format=k.source_format, public_jwk=k.public_jwk,
                              certificate_pem=k.certificate_pem, not_before=k.not_before, not_after=k.not_after)
                    for p, k in zip(participants, parsed, strict=True)])
                ResourceMapping.objects.bulk_create([
                    ResourceMapping(client=p, provider=None, scopes=authservice_settings.REGISTRY_SCOPE)
                    for p in participants])
                head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
                events = []
                for org, p, client, url, k in zip(orgs, participants, clients, urls, parsed, strict=True):
                    snapshot = {"status": Status.APPLIED, "role": p.role, "participant_id": str(p.participant_id),
                                "client_id": None}
                    approved = {**snapshot, "status": Status.APPROVED, "client_id": client.client_id}
                    for action, participant, before, after in (
                        (AuditAction.ORGANISATION_CREATED, None, {},
                         {"legal_name": org.legal_name, "org_id": str(org.org_id)}),
                        (AuditAction.PARTICIPANT_APPLIED, p, {},
                         {**snapshot, "base_url": url, "key": {"kid": k.kid, "thumbprint": k.thumbprint}}),
                        (AuditAction.PARTICIPANT_APPROVED, p, snapshot,
                         {**approved, "granted": {"registry": authservice_settings.REGISTRY_SCOPE}}),
                    ):
                        event = AuditEvent(sequence=head.sequence + 1, occurred_at=timezone.now(), actor=None,
                                           actor_label="system", action=action, participant=participant,
                                           organisation=org, before=before, after=after, prev_hash=head.last_hash,
                                           key_id=key.key_id)
                        event.hash = link_digest(event, key)
                        head.sequence, head.last_hash = event.sequence, event.hash
                        events.append(event)
                AuditEvent.objects.bulk_create(events, batch_size=1000)
                head.save(update_fields=["sequence", "last_hash"])
            credentials.writelines(f"{client.client_id}:{secret}\n"
                                   for client, secret in zip(clients, secrets_, strict=True))
    return {"filled": target - have, "seconds": round(time.monotonic() - started, 1)}


def inside_writes_and_verify(samples: int) -> dict:
    """Writes through the services (median ms), and verify_audit_log full then incremental."""
    _django()
    from cryptography.hazmat.primitives.asymmetric import ec
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ocen_sdk.key_loading import public_pem
    from registry import audit, services
    from registry.models import Participant

    figures: dict = {}
    started = time.monotonic()
    report = audit.verify_chain()
    figures["verify_full_ms"] = (time.monotonic() - started) * 1000
    if hasattr(audit, "record_verified"):
        audit.record_verified(report)
    pool = list(Participant.objects.filter(organisation__legal_name__startswith=FILL_MARK)
                .order_by("?").values_list("pk", flat=True)[:samples])
    grants = []
    services.scope_define(name="registry.bench", acting_user=None)  # grants name catalogue scopes
    for pk in pool:
        client = Participant.objects.get(pk=pk)
        tick = time.monotonic()
        services.mapping_grant(client=client, provider=None, at_registry=True, scopes="registry.read registry.bench",
                               acting_user=None)
        grants.append((time.monotonic() - tick) * 1000)
    figures["mapping_grant_ms"] = statistics.median(grants)
    onboardings, queries = [], []
    for _ in range(max(3, samples // 2)):
        pem = public_pem(ec.generate_private_key(ec.SECP256R1()))
        with CaptureQueriesContext(connection) as captured:
            tick = time.monotonic()
            services.participant_onboard(org_name=f"Bench Onboard {uuid.uuid4().hex[:12]}", role="LENDER",
                                         base_url="https://onboard.bench.example", public_key=pem, acting_user=None)
            onboardings.append((time.monotonic() - tick) * 1000)
        queries.append(len(captured))
    figures["onboarding_ms"] = statistics.median(onboardings)
    figures["onboarding_queries"] = statistics.median(queries)
    if hasattr(audit, "last_verified"):
        tick = time.monotonic()
        incremental = audit.verify_chain(since=audit.last_verified())
        figures["verify_incremental_ms"] = (time.monotonic() - tick) * 1000
        figures["verify_incremental_events"] = incremental.recomputed
        assert incremental.ok, incremental.reason
    figures["audit_events"] = report.checked
    assert report.ok, report.reason
    return figures


def inside_token(credentials_path: str, samples: int) -> dict:
    """The token endpoint in this process (no HTTP server, no load from elsewhere in the
    figure): µs per request for one client, for random clients whose records are cached,
    and for random clients whose records are not (the miss path)."""
    _django()

    from django.conf import settings
    from django.test import Client

    chooser = random.Random(0)  # noqa: S311 - picks test clients, not secrets

    from authservice.clientcache import client_cache

    settings.ALLOWED_HOSTS = ["*"]
    lines = [line.strip() for line in Path(credentials_path).read_text().splitlines() if line.strip()]
    headers = ["Basic " + base64.b64encode(line.encode()).decode() for line in lines]
    http = Client()

    def request(header: str) -> None:
        response = http.post("/oauth2/token", "grant_type=client_credentials",
                             content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=header)
        assert response.status_code == 200, response.content

    def timed(pick, *, cold: bool = False) -> float:
        cpu = 0.0
        for _ in range(samples):
            header = pick()
            if cold:
                client_cache.clear()
            tick = time.process_time()
            request(header)
            cpu += time.process_time() - tick
        return cpu / samples * 1e6

    cached = chooser.sample(headers, min(len(headers), samples))
    one, many, miss = [], [], []
    for _ in range(3):  # alternating, medians
        for header in cached:
            request(header)  # in the cache again (the miss figure empties it)
        one.append(timed(lambda: cached[0]))
        many.append(timed(lambda: chooser.choice(cached)))
        miss.append(timed(lambda: chooser.choice(headers), cold=True))
    return {"token_inproc_one_us": statistics.median(one), "token_inproc_random_cached_us": statistics.median(many),
            "token_inproc_miss_us": statistics.median(miss)}


def _backend_cpu_seconds(connection) -> float:
    """CPU seconds used so far by every PostgreSQL backend connected to this database (the
    service, idle meanwhile, and this process's own)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return sum(process_cpu_seconds(pid) for (pid,) in cursor.fetchall())


def inside_search(token: str, terms_path: str, samples: int) -> dict:
    """The search in this process, its rendered page and count dropped before every
    request (a first render after a change): CPU per request of this process and of the
    database (the query's own cost, which a cached figure hides), for terms of the hot
    set and for a term every filled name contains (its exact count reads every match)."""
    _django()
    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client

    from registry.api.cache import rendered_cache
    from registry.api.views import count_key
    from registry.invalidation import list_generation

    settings.ALLOWED_HOSTS = ["*"]
    terms = [line.strip() for line in Path(terms_path).read_text().splitlines() if line.strip()]
    http = Client()
    chooser = random.Random(0)  # noqa: S311 - picks search terms, not secrets

    def cpu_per_request(pick, samples: int) -> float:
        django_cpu, database_cpu = time.process_time(), _backend_cpu_seconds(connection)
        for _ in range(samples):
            term = pick()
            rendered_cache.clear()
            cache.delete(count_key(list_generation(), {"search": term}))  # the count too: a first render
            response = http.get("/registry/v1/participants", {"search": term}, HTTP_AUTHORIZATION=f"Bearer {token}")
            assert response.status_code == 200, response.content
        used = time.process_time() - django_cpu + _backend_cpu_seconds(connection) - database_cpu
        return used / samples * 1e6

    hot, broad = [], []
    for _ in range(3):  # alternating, medians
        hot.append(cpu_per_request(lambda: chooser.choice(terms), samples))
        broad.append(cpu_per_request(lambda: FILL_MARK.split()[0], max(5, samples // 10)))
    return {"search_uncached_us": statistics.median(hot), "search_broad_uncached_us": statistics.median(broad)}


def inside_writers(seconds: float, counts: list[int]) -> dict:
    """Registry writes per second (mapping_grant, each with its audit event) with N
    concurrent writers on distinct participants: all of them lock the one chain head."""
    _django()
    import threading

    from django.db import connection

    from registry import services
    from registry.models import Participant

    pool = list(Participant.objects.filter(organisation__legal_name__startswith=FILL_MARK)
                .order_by("pk").values_list("pk", flat=True)[:max(counts)])
    for name in ("registry.writer0", "registry.writer1"):
        services.scope_define(name=name, acting_user=None)
    connection.close()
    results = {}
    for count in counts:
        done = [0] * count
        latencies: list[float] = []
        deadline = time.monotonic() + seconds

        def writer(index: int, done=done, latencies=latencies, deadline=deadline) -> None:
            client = Participant.objects.get(pk=pool[index])
            turn = 0
            while time.monotonic() < deadline:
                turn += 1
                tick = time.monotonic()
                # two catalogue scopes in turn, replacing: every call is a change (and an audit event)
                services.mapping_grant(client=client, provider=None, at_registry=True,
                                       scopes=f"registry.read registry.writer{turn % 2}",
                                       acting_user=None, replace=True)
                latencies.append(time.monotonic() - tick)
                done[index] += 1
            from django.db import connection as thread_connection

            thread_connection.close()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(count)]
        tick = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - tick
        results[count] = {"writes_per_second": round(sum(done) / elapsed, 1),
                          "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None}
    return results


# --- The orchestrator ----------------------------------------------------------------------------

def run_inside(service: Service, *args: str) -> dict:
    output = subprocess.run([PY, "-m", "bench.scale", "--inside", *args], cwd=ROOT, env=service.env,
                            capture_output=True, text=True, check=False, timeout=7200)
    if output.returncode != 0:
        raise RuntimeError(f"bench.scale --inside {' '.join(args)} failed:\n{output.stderr[-4000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def restart(service: Service) -> None:
    if service.process and service.process.poll() is None:
        os.killpg(service.process.pid, signal.SIGTERM)
        service.process.wait(timeout=30)
    service.start()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(service: Service, dsn: str) -> float:
    """CPU seconds used so far by the service (granian and its workers) and by its
    PostgreSQL backends: per request, a cost that load from elsewhere on the machine
    changes far less than it changes req/s."""
    pids, pending = [], [service.process.pid]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        try:
            pending.extend(int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    with psycopg.connect(dsn) as conn:
        pids += [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    return sum(process_cpu_seconds(pid) for pid in pids)


def metric_counts(service: Service) -> dict:
    """The per-worker caches' events and the change feed's, summed over the workers
    (from /metrics): ``{("cache", name, event): n, ("feed", event): n}``."""
    counts: dict = {}
    for line in httpx.get(f"{service.url}/metrics", timeout=10).text.splitlines():
        name, _, rest = line.partition("{")
        if name not in ("authservice_cache_events_total", "authservice_change_feed_events_total"):
            continue
        labels = dict(part.split("=", 1) for part in rest.rsplit("}", 1)[0].split(",") if "=" in part)
        labels = {key: value.strip('"') for key, value in labels.items()}
        key = (("cache", labels.get("cache"), labels.get("event")) if name.startswith("authservice_cache")
               else ("feed", labels.get("event")))
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def hit_rate(before: dict, after: dict, cache: str) -> float | None:
    hits = after.get(("cache", cache, "hit"), 0.0) - before.get(("cache", cache, "hit"), 0.0)
    misses = after.get(("cache", cache, "miss"), 0.0) - before.get(("cache", cache, "miss"), 0.0)
    return hits / (hits + misses) if hits + misses else None


def feed_events(before: dict, after: dict) -> dict:
    return {key[1]: int(after[key] - before.get(key, 0.0)) for key in after
            if key[0] == "feed" and after[key] - before.get(key, 0.0)}


# A measured pass may fall this far below the hit rate its warm-up reached; below it, the
# pass is marked and taken again (up to REPEATS times): its figure would measure misses.
HIT_RATE_SLACK = 0.02
REPEATS = 2


def warm(args, service: Service, url: str, script: str, env: dict, cache: str,
         max_passes: int = 40) -> tuple[int, float]:
    """wrk passes until every worker has met the hot set: until a pass meets (almost)
    nothing new in ``cache`` (99.5 % hits), or, once most of it is met (90 % hits), its
    misses stop falling (what is left then is the steady state: rendered answers end after
    a minute, so a slow machine keeps re-rendering a share of the hot set whatever it
    does). Misses that "stop falling" while most requests still miss are no steady state:
    on a busy machine each pass meets only as many new clients as it has CPU for, so two
    passes of nothing but misses looked alike and the warm-up stopped after two, and the
    measured passes paid the uncached path (issue: 0.3x at 100,000 with one core busy).
    Returns the passes and the last pass's hit rate: what the measured passes are held to."""
    passes, previous, rate_hit = 0, None, 0.0
    while passes < max_passes:
        passes += 1
        before = metric_counts(service)
        run = wrk(url, script, env=env, **args.load)
        after = metric_counts(service)
        misses = after.get(("cache", cache, "miss"), 0.0) - before.get(("cache", cache, "miss"), 0.0)
        rate_hit = hit_rate(before, after, cache) or 0.0
        rate = misses / max(1, run.requests)
        if misses <= max(1, run.requests // 200):
            break
        if rate_hit >= 0.9 and previous is not None and rate > 0.8 * previous:
            break
        previous = rate
    return passes, rate_hit


def measured_run(args, url: str, script: str, env: dict, *, service: Service, dsn: str, name: str,
                 cache: str, promised: float, passes: list) -> tuple:
    """One measured wrk run, with the load average, the cache's hit rate and the feed's
    events of the run recorded in ``passes``; taken again while the hit rate is below what
    the warm-up reached."""
    for attempt in range(REPEATS + 1):
        before, cpu_before = metric_counts(service), server_cpu_seconds(service, dsn)
        run = wrk(url, script, env=env, **args.load)
        cpu_us = (server_cpu_seconds(service, dsn) - cpu_before) / max(1, run.requests) * 1e6
        after = metric_counts(service)
        rate = hit_rate(before, after, cache)
        low = rate is not None and rate < promised - HIT_RATE_SLACK
        passes.append({"pass": name, "attempt": attempt + 1, "rps": run.rps, "server_us": cpu_us,
                       "hit_rate": rate, "promised": promised, "load1": os.getloadavg()[0],
                       "feed": feed_events(before, after), "marked": low})
        if not low:
            break
    return run, cpu_us


def median_rps(args, url: str, script: str, env: dict, *, service: Service, dsn: str, name: str = "",
               cache: str = "registry_responses", promised: float = 0.0, passes: list | None = None
               ) -> tuple[float, float]:
    """The median req/s of ``--rounds`` wrk runs, and the median server CPU per request (µs)."""
    rates, cpu = [], []
    errors = 0
    passes = passes if passes is not None else []
    for _ in range(args.rounds):
        run, cpu_us = measured_run(args, url, script, env, service=service, dsn=dsn, name=name, cache=cache,
                                   promised=promised, passes=passes)
        cpu.append(cpu_us)
        rates.append(run.rps)
        errors += run.errors
    if errors:
        print(f"  warning: {errors} errors in {script} {url}", file=sys.stderr)
    return statistics.median(rates), statistics.median(cpu)


def measure(args, service: Service, dsn: str, agent: dict, lender: dict, workdir: Path, size: int) -> dict:
    figures: dict = {}
    url = service.url
    token = httpx.post(f"{url}/oauth2/token", data={"grant_type": "client_credentials",
                                                     "resource": "urn:ocen:registry"},
                       auth=(agent["client_id"], agent["client_secret"])).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with psycopg.connect(dsn) as conn:
        ids = [str(row[0]) for row in conn.execute(
            "SELECT participant_id FROM registry_participant ORDER BY random() LIMIT %s", (args.hot_set,))]
        # As many terms as the hot set at every size (it asked for 2,000 names: at 1,000
        # participants that was every name, half as many distinct pages as at 100,000, so
        # more of them were cache hits at the small size).
        names = [row[0] for row in conn.execute(
            "SELECT legal_name FROM registry_organisation ORDER BY random() LIMIT %s", (args.hot_set,))]
        figures["participants_listed"] = conn.execute(
            "SELECT count(*) FROM registry_participant WHERE status <> 'OFFBOARDED'").fetchone()[0]
    paths = {"detail": [f"/registry/v1/participants/{pid}" for pid in ids],
             "jwks": [f"/registry/v1/participants/{pid}/jwks" for pid in ids],
             "search": [f"/registry/v1/participants?search={name.split()[-1][-5:]}" for name in names]}
    for name, lines in paths.items():
        (workdir / f"{name}.txt").write_text("\n".join(lines) + "\n")
    env = {"BENCH_TOKEN": token}
    cpu = {"service": service, "dsn": dsn}
    (workdir / "terms.txt").write_text("\n".join(name.split()[-1][-5:] for name in names) + "\n")
    figures["warm_passes"], figures["warm_hit_rate"], figures["passes"] = {}, {}, []
    passes = figures["passes"]
    for name in ("detail", "jwks", "search"):
        # Every worker meets the hot set, then it is measured at once: rendered answers are
        # re-signed after 30 s and end after 60 s, so a figure taken after the other sets'
        # warm-ups (as it was) paid for re-signing a share of its set, more where the
        # warm-ups took longer (detail: 1,656 -> 3,395 µs per request from 1k to 100k).
        paths_env = {**env, "BENCH_PATHS": str(workdir / f"{name}.txt")}
        figures["warm_passes"][name], promised = warm(args, service, url, "random_get.lua", paths_env,
                                                      "registry_responses")
        figures["warm_hit_rate"][name] = promised
        figures[f"{name}_rps"], figures[f"{name}_server_us"] = median_rps(
            args, url, "random_get.lua", paths_env, **cpu, name=name, promised=promised, passes=passes)
    figures.update(run_inside(service, "search", token, str(workdir / "terms.txt"), str(args.search_samples)))
    list_url = f"{url}/registry/v1/participants"
    figures["list_page1_rps"], figures["list_page1_server_us"] = median_rps(
        args, list_url, "registry_get.lua", {**env, "BENCH_ETAG": ""}, **cpu, name="list page 1", passes=passes)
    detail_url = f"{url}/registry/v1/participants/{lender['participant_id']}"
    etag = httpx.get(detail_url, headers=headers).headers["etag"]
    figures["revalidation_304_rps"], figures["revalidation_304_server_us"] = median_rps(
        args, detail_url, "registry_get.lua", {**env, "BENCH_ETAG": etag}, **cpu, name="304", passes=passes)
    # List page 1 right after a mapping grant to the caller: before scoped invalidation every
    # cached page was dropped; now only the caller's own client record is reloaded.
    cold = []
    for _ in range(5):
        scope = f"bench.{uuid.uuid4().hex[:8]}"
        service.manage("define_scope", scope)  # grants name catalogue scopes
        service.manage("grant_access", agent["participant_id"], lender["participant_id"], "--scopes",
                       f"ocen.loan {scope}")
        tick = time.monotonic()
        httpx.get(list_url, headers=headers).raise_for_status()
        cold.append((time.monotonic() - tick) * 1000)
    figures["list_page1_after_write_ms"] = statistics.median(cold)
    tick = time.monotonic()
    page, seen = f"{list_url}?cursor=&page_size={CRAWL_PAGE_SIZE}", 0
    with httpx.Client(headers=headers, timeout=60) as http:
        while page:
            body = http.get(page).raise_for_status().json()
            seen += len(body["results"])
            page = body["next"]
    figures["crawl_seconds"] = time.monotonic() - tick
    figures["crawl_participants"] = seen
    basics = workdir / "basics.txt"
    lines = [base64.b64encode(line.strip().encode()).decode()
             for line in (workdir / "credentials.txt").read_text().splitlines() if line.strip()]
    random.Random(size).shuffle(lines)  # noqa: S311 - picks test clients, not secrets
    basics.write_text("\n".join(lines[:args.hot_set]) + "\n")
    # One client is a client of the hot set: the same rows as the random ones, so the A/B
    # compares one against many and nothing else.
    one = {"BENCH_BASIC": lines[0]}
    many = {"BENCH_BASICS": str(basics)}
    token_url = f"{url}/oauth2/token"
    figures["warm_passes"]["token"], promised = warm(args, service, token_url, "token_random.lua", many, "clients")
    figures["warm_hit_rate"]["token"] = promised
    # Then one client and random clients alternate (A/B), so load from elsewhere hits both
    # alike; the ratio is taken within each pair, then the median.
    runs: dict[str, list] = {"one": [], "many": []}
    cpu: dict[str, list] = {"one": [], "many": []}
    for _ in range(args.rounds):
        for name, script, load in (("one", "token_basic.lua", one), ("many", "token_random.lua", many)):
            run, cpu_us = measured_run(args, token_url, script, load, service=service, dsn=dsn,
                                       name=f"token, {name}", cache="clients", promised=promised, passes=passes)
            cpu[name].append(cpu_us)
            runs[name].append(run.rps)
    figures["token_one_client_rps"] = statistics.median(runs["one"])
    figures["token_random_clients_rps"] = statistics.median(runs["many"])
    figures["token_random_over_one"] = statistics.median(
        many / one for one, many in zip(runs["one"], runs["many"], strict=True))
    figures["token_one_server_us"] = statistics.median(cpu["one"])
    figures["token_random_server_us"] = statistics.median(cpu["many"])
    figures["rss_mib"] = rss_kib(service.process.pid) / 1024
    return figures


ROWS = [  # (figure, label, unit, kind) kind "rate": higher is better; "time": lower is better
    ("detail_rps", "detail, random of a hot set", "req/s", "rate"),
    ("detail_server_us", "  server CPU (+DB) per request", "µs", "time"),
    ("jwks_rps", "JWKS, random of a hot set", "req/s", "rate"),
    ("jwks_server_us", "  server CPU (+DB) per request", "µs", "time"),
    ("list_page1_rps", "list page 1 (cached)", "req/s", "rate"),
    ("list_page1_server_us", "  server CPU (+DB) per request", "µs", "time"),
    ("list_page1_after_write_ms", "list page 1 after a caller mapping write", "ms", "time"),
    ("search_rps", "search, random of a hot set of terms", "req/s", "rate"),
    ("search_server_us", "  server CPU (+DB) per request", "µs", "time"),
    ("search_uncached_us", "search CPU (+DB), uncached", "µs", "time"),
    ("search_broad_uncached_us", "search CPU (+DB), uncached, matching all", "µs", "time"),
    ("crawl_seconds", f"crawl all pages (cursor, {CRAWL_PAGE_SIZE}/page)", "s", "time"),
    ("revalidation_304_rps", "304 revalidation", "req/s", "rate"),
    ("revalidation_304_server_us", "  server CPU (+DB) per request", "µs", "time"),
    ("mapping_grant_ms", "write: mapping_grant", "ms", "time"),
    ("onboarding_ms", "write: onboarding", "ms", "time"),
    ("onboarding_queries", "write: onboarding, queries", "", "time"),
    ("token_one_client_rps", "token, one client (A/B)", "req/s", "rate"),
    ("token_random_clients_rps", "token, random hot-set clients (A/B)", "req/s", "rate"),
    ("token_random_over_one", "token, random/one client (A/B pairs)", "ratio", "ratio"),
    ("token_one_server_us", "token server CPU (+DB), one client", "µs", "time"),
    ("token_random_server_us", "token server CPU (+DB), random clients", "µs", "time"),
    ("token_inproc_one_us", "token in-process CPU, one client", "µs", "time"),
    ("token_inproc_random_cached_us", "token in-process CPU, random cached", "µs", "time"),
    ("token_inproc_miss_us", "token in-process CPU, random uncached", "µs", "time"),
    ("verify_incremental_ms", "verify_audit_log, incremental", "ms", "time"),
    ("verify_full_ms", "verify_audit_log --full", "ms", "time"),
    ("audit_events", "audit events", "", "time"),
    ("rss_mib", "service RSS (all workers)", "MiB", "time"),
]


# How each figure is taken: under wrk against the running service, by a sequential HTTP
# client, or inside one Django process (no server, no network).
IN_PROCESS = {"search_uncached_us", "search_broad_uncached_us", "mapping_grant_ms", "onboarding_ms",
              "onboarding_queries", "token_inproc_one_us", "token_inproc_random_cached_us", "token_inproc_miss_us",
              "verify_incremental_ms", "verify_full_ms", "audit_events"}
SEQUENTIAL = {"list_page1_after_write_ms", "crawl_seconds"}


def taken(key: str) -> str:
    if key in IN_PROCESS:
        return "inproc"
    if key in SEQUENTIAL:
        return "client"
    return "—" if key == "rss_mib" else "wrk"


def _fmt(value) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def print_table(sizes: list[int], results: dict[int, dict], meta: dict) -> None:
    print(f"\nRegistry at scale — {meta['started']} — {meta['machine']}; granian {meta['workers']} workers, "
          f"wrk -c{meta['connections']} -d{meta['duration']}s, median of {meta['rounds']} runs, PostgreSQL")
    if meta.get("cpu_hog"):
        print("with one core kept busy by another process (--cpu-hog)")
    header = (f"{'figure':<40} {'taken':>6} {'unit':>6} " + " ".join(f"{size:>10,}" for size in sizes)
              + f" {'growth':>8}")
    print(header)
    print("-" * len(header))
    for key, label, unit, kind in ROWS:
        values = [results[size].get(key) for size in sizes]
        growth = "—"
        if kind != "ratio" and values[0] and values[-1] and None not in values and len(sizes) > 1:
            ratio = values[0] / values[-1] if kind == "rate" else values[-1] / values[0]
            growth = f"{ratio:.2f}x"
        print(f"{label:<40} {taken(key):>6} {unit:>6} " + " ".join(f"{_fmt(v):>10}" for v in values)
              + f" {growth:>8}")
    print("growth: the cost at the largest size over the cost at the smallest (req/s: smallest/largest)")
    print("taken: wrk = under wrk against the service (2 workers); client = one sequential HTTP client; "
          "inproc = inside one Django process")
    for size in sizes:
        passes = results[size].get("passes") or []
        if not passes:
            continue
        print(f"\nmeasured passes at {size:,} (hit rate of the cache the figure reads; the warm-up's in brackets; "
              "load average; change feed events)")
        for p in passes:
            rate = "—" if p["hit_rate"] is None else f"{p['hit_rate']:.3f}"
            feed = ", ".join(f"{k} {v}" for k, v in sorted(p["feed"].items())) or "—"
            mark = "  MARKED: below the warm-up, taken again" if p["marked"] else ""
            print(f"  {p['pass']:<14} #{p['attempt']} {p['rps']:>9,.0f} req/s {p['server_us']:>8,.0f} µs  "
                  f"hit {rate} [{p['promised']:.3f}]  load {p['load1']:.2f}  feed: {feed}{mark}")
    crawl = [results[size].get("crawl_seconds") for size in sizes]
    if None not in crawl:
        print("crawl, µs per participant: " + ", ".join(
            f"{size:,}: {1e6 * seconds / max(1, results[size]['crawl_participants']):.0f}"
            for size, seconds in zip(sizes, crawl, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", default="1000,10000,100000", help="sizes, comma-separated")
    parser.add_argument("--database", default=os.environ.get("BENCH_SCALE_DB", "ocen_bench_scale"))
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per figure (the median is shown)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", str(os.cpu_count()))))
    parser.add_argument("--write-samples", type=int, default=20)
    parser.add_argument("--hot-set", type=int, default=1000,
                        help="participants and clients the random reads and token requests pick from, at every size")
    parser.add_argument("--token-samples", type=int, default=300, help="in-process token requests per figure")
    parser.add_argument("--search-samples", type=int, default=200, help="in-process search requests per figure")
    parser.add_argument("--writers", default="", help="e.g. 1,2,4,8: chain-head lock bench at the largest size")
    parser.add_argument("--writer-seconds", type=float, default=5.0)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--cpu-hog", action="store_true",
                        help="keep one core busy with another process for the whole run (a busy host)")
    parser.add_argument("--inside", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        command, *rest = args.inside
        if command == "fill":
            result = inside_fill(int(rest[0]), rest[1])
        elif command == "writes":
            result = inside_writes_and_verify(int(rest[0]))
        elif command == "search":
            result = inside_search(rest[0], rest[1], int(rest[2]))
        elif command == "token":
            result = inside_token(rest[0], int(rest[1]))
        else:
            result = inside_writers(float(rest[0]), [int(n) for n in rest[1].split(",")])
        print(json.dumps(result))
        return 0
    sizes = sorted({int(size) for size in args.participants.split(",") if size.strip()})
    args.load = {"duration": args.duration, "connections": args.connections, "threads": args.wrk_threads}
    meta = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} cores, {os.uname().machine}", "duration": args.duration,
            "rounds": args.rounds, "connections": args.connections, "workers": args.workers, "sizes": sizes,
            "cpu_hog": args.cpu_hog}
    results: dict[int, dict] = {}
    workdir = Path(tempfile.mkdtemp(prefix="ocen-scale-"))
    # A process that never sleeps: one core busy for the whole run, as on a busy host.
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.cpu_hog else None
    with contextlib.ExitStack() as stack, bench_database(args.database) as dsn:
        if hog is not None:
            stack.callback(hog.wait)
            stack.callback(hog.kill)
        service = Service(workers=args.workers, threads=1)
        service.env["DATABASE_URL"] = dsn.replace("postgresql://", "postgres://")
        service.manage("migrate", "--noinput")
        service.manage("bootstrap", "--no-admin")
        from cryptography.hazmat.primitives.asymmetric import ec

        agent = onboard(service, "Bench Agent", "LOAN_AGENT", ec.generate_private_key(ec.SECP256R1()))
        lender = onboard(service, "Bench Lender", "LENDER", ec.generate_private_key(ec.SECP256R1()))
        service.manage("define_scope", "ocen.loan")
        service.manage("grant_access", agent["participant_id"], lender["participant_id"], "--scopes", "ocen.loan")
        credentials = workdir / "credentials.txt"
        credentials.touch()
        try:
            for size in sizes:
                fill = run_inside(service, "fill", str(size), str(credentials))
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
                print(f"[{size:,}] filled {fill['filled']:,} in {fill['seconds']}s", file=sys.stderr)
                restart(service)
                figures = measure(args, service, dsn, agent, lender, workdir, size)
                figures.update(run_inside(service, "writes", str(args.write_samples)))
                figures.update(run_inside(service, "token", str(credentials), str(args.token_samples)))
                figures["fill_seconds"] = fill["seconds"]
                results[size] = figures
                shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}
                print(f"[{size:,}] {json.dumps(shown)}", file=sys.stderr)
            if args.writers:
                writers = run_inside(service, "writers", str(args.writer_seconds), args.writers)
                meta["writers"] = writers
        finally:
            service.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(sizes, results, meta)
    if meta.get("writers"):
        print(f"\nconcurrent registry writers (mapping_grant + audit event), {args.writer_seconds}s each, "
              f"at {sizes[-1]:,} participants:")
        for count, figure in meta["writers"].items():
            print(f"  {count} writers: {figure['writes_per_second']:>7.1f} writes/s, p50 {figure['p50_ms']} ms")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    stamp = meta["started"].replace(":", "").replace("-", "")
    payload = json.dumps({"meta": meta, "results": {str(k): v for k, v in results.items()}}, indent=2)
    (output / f"scale-{stamp}.json").write_text(payload)
    (output / "scale-latest.json").write_text(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
