"""The shipped proxy in front of two instances: deploy/haproxy.cfg itself (not a copy), run by
Debian's HAProxy on loopback, in front of two instances of the launcher (python -m
authservice.serve, two workers each) sharing one temporary PostgreSQL database.

The instances trust the proxy's address (AUTHSERVICE_TRUSTED_PROXIES=127.0.0.1, what
compose.yaml and the k8s files name for their proxies); clients come from other loopback
addresses (127.0.0.2, 127.0.0.3) by binding their source. In that topology:

- failed client authentication locks out the address it came from, not the proxy's:
  a client at another address still gets tokens (without the trusted proxy, everyone
  shared the proxy's address and was locked out together);
- /metrics is refused through the proxy, however spelled, and served directly;
- a rolling restart (SIGTERM to one instance, start it again, then the other) under
  continuous token requests through the proxy loses none;
- an instance killed outright (SIGKILL) under load loses no token request either: the
  proxy sends the ones it was answering to the other instance.

PostgreSQL pass only; skipped without HAProxy locally, failed without it under CI=true.
Its temporary database is named after this run's test database (OPS_SMOKE_DB_PREFIX, if set,
instead), so scripts/run-tests drops it with the run's if the test could not.
"""

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

from scripts.opslib import (
    Instance,
    Load,
    OwnRedis,
    ShippedHAProxy,
    onboard,
    outcomes,
    prepare_database,
    service_env,
    temp_database,
)
from tests.test_support import admin_dsn, database_prefix, free_port, require

pytestmark = [
    pytest.mark.ops_smoke,
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="production-like runs on PostgreSQL: they run in the PostgreSQL pass"),
]

PROXY_ADDRESS = "127.0.0.1"  # the instances see HAProxy's connections from here
ATTACKER, BYSTANDER = "127.0.0.2", "127.0.0.3"
FAILURE_LIMIT = 5  # per (client_id, address); per address, five times as many
TOKEN = {"grant_type": "client_credentials"}








def client_from(address: str, **kwargs) -> httpx.Client:
    """A client whose connections leave from ``address`` (a loopback address other than the proxy's)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10, **kwargs)


class Topology:
    def __init__(self, proxy: ShippedHAProxy, instances: list[Instance], env: dict, agent, victim) -> None:
        self.proxy, self.instances, self.env = proxy, instances, env
        self.agent, self.victim = agent, victim


@pytest.fixture(scope="module")
def topology():
    require(shutil.which("haproxy") is not None, "haproxy (apt-get install haproxy)")
    workdir = Path(tempfile.mkdtemp(prefix="ocen-topology-"))
    prefix = os.environ.get("OPS_SMOKE_DB_PREFIX")
    prefix = f"{prefix}_topology" if prefix else database_prefix("topology")
    redis = OwnRedis(free_port(), workdir) if shutil.which("redis-server") else None
    instances: list[Instance] = []
    proxy = None
    try:
        with temp_database(admin_dsn(), prefix) as database_url:
            if redis:
                redis.start()
            proxy_port = free_port()
            env = service_env(database_url=database_url, redis_url=redis.url if redis else "",
                              issuer=f"http://127.0.0.1:{proxy_port}",
                              extra={"AUTHSERVICE_TRUSTED_PROXIES": PROXY_ADDRESS,
                                     "AUTHSERVICE_AUTH_FAILURE_LIMIT": str(FAILURE_LIMIT),
                                     # "authservice": the Host of the proxy's health checks
                                     "ALLOWED_HOSTS": "authservice,127.0.0.1,localhost"})
            prepare_database(env)
            agent, victim = onboard(env, "Topology Agent"), onboard(env, "Topology Victim")
            instances = [Instance(name, free_port(), env, workers=2) for name in ("app1", "app2")]
            for instance in instances:
                instance.start(wait=False)
            for instance in instances:
                instance.wait_ready()
            proxy = ShippedHAProxy(proxy_port, *instances, workdir)
            proxy.start()
            yield Topology(proxy, instances, env, agent, victim)
    finally:
        if proxy:
            proxy.stop()
        for instance in instances:
            instance.cleanup()
        if redis:
            redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_lockout_is_per_real_client_address(topology):
    url = f"{topology.proxy.url}/oauth2/token"
    victim = topology.victim
    # Failures from one address: the victim's client_id until that pair is locked out, then
    # made-up client_ids until the address itself is. Each carries a forged X-Forwarded-For,
    # which must not help (the proxy appends the real address; the service reads from the right).
    statuses = []
    with client_from(ATTACKER) as attacker:
        for n in range(FAILURE_LIMIT + 5 * FAILURE_LIMIT + 2):
            client_id = victim.client_id if n < FAILURE_LIMIT + 1 else f"made-up-{n}"
            statuses.append(attacker.post(url, data=TOKEN, auth=(client_id, "wrong-secret"),
                                          headers={"X-Forwarded-For": f"203.0.113.{n % 250 + 1}"}).status_code)
        assert 429 in statuses, statuses
        assert set(statuses) <= {401, 400, 429}, statuses
        refused = attacker.post(url, data=TOKEN, auth=(victim.client_id, victim.client_secret))
        assert refused.status_code == 429 and "retry-after" in refused.headers
        other = topology.agent
        assert attacker.post(url, data=TOKEN, auth=(other.client_id, other.client_secret)).status_code == 429
    # Another address, through the same proxy: the victim and everyone else still get tokens.
    with client_from(BYSTANDER) as bystander:
        for participant in (victim, topology.agent):
            response = bystander.post(url, data=TOKEN, auth=(participant.client_id, participant.client_secret))
            assert response.status_code == 200, response.text


METRICS_SPELLINGS = ["/metrics", "/metrics?format=text", "/%6detrics", "/%6Detrics", "//metrics", "/./metrics",
                     "/METRICS", "/metrics/"]


def test_metrics_are_refused_through_the_proxy_and_served_directly(topology):
    # From 127.0.0.1 too, an address the instances' allowlist admits: the public port never serves them.
    for address in (PROXY_ADDRESS, ATTACKER):
        with client_from(address) as outside:
            for path in METRICS_SPELLINGS:
                response = outside.get(f"{topology.proxy.url}{path}")
                assert response.status_code in {403, 404}, (address, path, response.status_code)
                assert b"authservice_" not in response.content, path
            assert outside.get(f"{topology.proxy.url}/healthz").status_code == 200
    for instance in topology.instances:
        direct = httpx.get(f"{instance.url}/metrics", timeout=10)
        assert direct.status_code == 200 and b"authservice_" in direct.content
    # A percent-encoded spelling reaches the metrics view when sent directly: why the proxy decodes.
    raw = httpx.get(f"{topology.instances[0].url}/%6detrics", timeout=10)
    assert raw.status_code in {200, 404}


def test_rolling_restart_under_load_loses_no_request(topology):
    proxy, agent = topology.proxy, topology.agent
    load = Load(_token_request(proxy.url, agent), threads=4).start()
    try:
        time.sleep(1.5)
        timeline = []
        for instance, server in zip(topology.instances, ("app1", "app2"), strict=True):
            seen = len(proxy.state_changes(server))
            started = time.monotonic()
            instance.signal(signal.SIGTERM)  # what the orchestrator sends the container's process
            instance.process.wait(timeout=60)
            stopped = time.monotonic()
            instance.stop()  # closes its log
            # HAProxy's health checks take it out, then put it back once /readyz answers again.
            assert proxy.wait_state(server, "DOWN", after=seen, timeout=30), proxy.state_changes(server)
            instance.start()
            assert proxy.wait_state(server, "UP", after=seen + 1, timeout=60), proxy.state_changes(server)
            timeline.append(f"{server}: exited {stopped - started:.1f} s after SIGTERM, "
                            f"back in rotation after {time.monotonic() - started:.1f} s")
            time.sleep(1.0)
    finally:
        load.stop()
    counts = outcomes(load.snapshot())
    assert counts.get("200", 0) > 50, counts
    assert set(counts) == {"200"}, (dict(counts), timeline, _unusual(proxy))


def test_an_instance_killed_under_load_loses_no_token_request(topology):
    """SIGKILL (a machine or container dying): the token requests it was answering are sent
    again to the other instance (retry-on empty-response; the token request is idempotent)."""
    proxy, victim = topology.proxy, topology.instances[1]
    load = Load(_token_request(proxy.url, topology.agent), threads=8).start()
    try:
        time.sleep(1.5)
        seen = len(proxy.state_changes("app2"))
        victim.kill_all()
        assert proxy.wait_state("app2", "DOWN", after=seen, timeout=30)
        time.sleep(1.0)
    finally:
        load.stop()
        victim.stop()
        victim.start()
        proxy.wait_state("app2", "UP", after=seen + 1, timeout=60)
    counts = outcomes(load.snapshot())
    assert counts.get("200", 0) > 50, counts
    assert set(counts) == {"200"}, (dict(counts), _unusual(proxy))


def _token_request(url: str, participant):
    auth = (participant.client_id, participant.client_secret)

    def make(client: httpx.Client, n: int):
        return "token", client.post(f"{url}/oauth2/token", data=TOKEN, auth=auth)

    return make


def _unusual(proxy: ShippedHAProxy) -> list[str]:
    return [line for line in proxy.log_tail(10**6).splitlines() if '" 200 ' not in line and " 200 " not in line][-30:]
