"""In-process micro-benchmark: successful token requests through django.test.Client.

    python -m pytest bench/token_micro.py -q -s -p no:cacheprovider

No HTTP server, no peer: it shows what a change adds to the endpoint's own work per
request (e.g. the lockout check), on whichever database and cache the environment
names. `bench/run.py` is the load test. Nothing here asserts a time.
"""

import base64
import statistics
import time

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

REQUESTS = 2000
ROUNDS = 5


@pytest.mark.django_db
def test_token_requests_in_process():
    from authservice.clients import client_create
    from signing.keys import signing_key_ensure

    signing_key_ensure()
    oauth_client, secret = client_create(name="bench")
    http = Client()
    authorization = "Basic " + base64.b64encode(f"{oauth_client.client_id}:{secret}".encode()).decode()

    def run(count: int) -> tuple[float, float]:
        """Wall-clock and this process's CPU seconds (the CPU figure is steadier on a busy machine)."""
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            response = http.post("/oauth2/token", "grant_type=client_credentials",
                                 content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=authorization)
            assert response.status_code == 200
        return time.perf_counter() - wall, time.process_time() - cpu

    run(200)  # warm the client cache and the signer
    rounds = [run(REQUESTS) for _ in range(ROUNDS)]
    wall = statistics.median(r[0] for r in rounds) / REQUESTS * 1e6
    cpu = statistics.median(r[1] for r in rounds) / REQUESTS * 1e6
    best = min(r[0] for r in rounds) / REQUESTS * 1e6
    print(f"\n{connection.vendor}, cache {'redis' if settings.REDIS_URL else 'local'}: "
          f"{REQUESTS} requests x {ROUNDS} rounds; median {wall:.0f} us/request wall (best {best:.0f}), "
          f"{cpu:.0f} us/request CPU in this process")
