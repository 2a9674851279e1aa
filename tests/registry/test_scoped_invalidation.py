"""Invalidation scoped to what changed, and still exact.

Two "workers" are two sets of process-local caches (client records, rendered registry
answers), switched in turn; a third, empty one renders what is true now. After any
change, no worker serves anything but the fresh answer, for the registry API and for
the token endpoint's client records; and a change to one participant leaves another
participant's answers and client record cached.
"""

from contextlib import contextmanager

import pytest

from authservice.bounded_cache import BoundedCache
from authservice.clientcache import client_cache
from registry import services
from registry.api import cache as response_cache
from registry.api.cache import rendered_cache
from registry.models import Endpoint, PublicKey, ResourceMapping
from tests.keymaterial import ec_key

UNBOUNDED = 2**30


class Worker:
    """One worker's process-local caches."""

    def __init__(self) -> None:
        self.clients = BoundedCache("clients", max_bytes=lambda: UNBOUNDED)
        self.responses = BoundedCache("registry_responses", max_bytes=lambda: UNBOUNDED, clock=response_cache._now)

    @contextmanager
    def active(self):
        saved = client_cache.entries, rendered_cache.entries
        client_cache.entries, rendered_cache.entries = self.clients, self.responses
        try:
            yield self
        finally:
            client_cache.entries, rendered_cache.entries = saved


@pytest.fixture
def world(onboard, admin_user, token_for, client, scope_catalogue):
    """A reader (with a registry token) mapped to a lender A, and a bystander lender B."""
    reader, _ = onboard("LOAN_AGENT", "Reader Co")
    lender_a, _ = onboard("LENDER", "Alpha Bank")
    lender_b, _ = onboard("LENDER", "Beta Bank")
    services.mapping_grant(client=reader.participant, provider=lender_a.participant, scopes="ocen.loan",
                           acting_user=admin_user)
    token = token_for(reader.participant.client, reader.client_secret).json()["access_token"]

    def urls(creds):
        base = f"/registry/v1/participants/{creds.participant.participant_id}"
        return [base, f"{base}/jwks", f"/service/participant-roles/{creds.participant.participant_id}"]

    lists = ["/registry/v1/participants", "/registry/v1/participants?cursor=&page_size=2",
             "/registry/v1/participants?search=alpha", "/registry/v1/participants?status=APPROVED"]
    return {"reader": reader, "a": lender_a, "b": lender_b, "token": token, "admin": admin_user,
            "a_urls": urls(lender_a), "b_urls": urls(lender_b), "lists": lists, "client": client,
            "token_for": token_for}


def served(world, paths) -> dict:
    auth = f"Bearer {world['token']}"
    return {path: (response.status_code, response.content)
            for path in paths for response in [world["client"].get(path, HTTP_AUTHORIZATION=auth)]}


def record_view(client_id: str):
    """What the token endpoint would act on for this client, from this worker's cache."""
    record = client_cache.get(client_id)
    if record is None:
        return None
    oauth = record.client
    return (oauth.client_secret, oauth.previous_client_secret, oauth.is_active, oauth.tokens_not_before,
            record.grants.scopes_by_audience, record.grants.claims, sorted(key.kid or "" for key in record.keys))


def snapshot(world) -> tuple:
    paths = world["a_urls"] + world["b_urls"] + world["lists"]
    clients = [world[name].client_id for name in ("reader", "a", "b")]
    return served(world, paths), {client_id: record_view(client_id) for client_id in clients}


def _rotate(w):
    services.participant_rotate_secret(participant=w["a"].participant, acting_user=w["admin"], force=True)


def _rotate_ending_tokens(w):
    services.participant_rotate_secret(participant=w["a"].participant, acting_user=w["admin"], force=True,
                                       revoke_tokens=True)


def _revoke_key(w):
    services.public_key_add(participant=w["a"].participant, key_material=ec_key().public_pem(), acting_user=w["admin"])
    first = PublicKey.objects.filter(participant=w["a"].participant).order_by("pk").first()
    services.public_key_revoke(key=first, acting_user=w["admin"])


def _remove_endpoint(w):
    services.endpoint_add(participant=w["a"].participant, url="https://second.alpha.example", acting_user=w["admin"])
    first = Endpoint.objects.filter(participant=w["a"].participant).order_by("pk").first()
    services.endpoint_remove(endpoint=first, acting_user=w["admin"])


def _suspend(w):
    services.participant_suspend(participant=w["a"].participant, reason="audit", acting_user=w["admin"])


def _reinstate(w):
    _suspend(w)
    services.participant_reinstate(participant=w["a"].participant, acting_user=w["admin"])


CHANGES = {
    "suspend": _suspend,
    "reinstate": _reinstate,
    "key add": lambda w: services.public_key_add(participant=w["a"].participant,
                                                 key_material=ec_key().public_pem(), acting_user=w["admin"]),
    "key revoke": _revoke_key,
    "endpoint add": lambda w: services.endpoint_add(participant=w["a"].participant,
                                                    url="https://new.alpha.example", acting_user=w["admin"]),
    "endpoint remove": _remove_endpoint,
    "mapping grant": lambda w: services.mapping_grant(client=w["reader"].participant, provider=w["a"].participant,
                                                      scopes="ocen.loan ocen.offer", acting_user=w["admin"]),
    "mapping grant to A's client": lambda w: services.mapping_grant(
        client=w["a"].participant, provider=None, at_registry=True, scopes="registry.read registry.audit",
        acting_user=w["admin"]),
    "mapping remove": lambda w: services.mapping_remove(
        mapping=ResourceMapping.objects.get(client=w["reader"].participant, provider=w["a"].participant),
        acting_user=w["admin"]),
    "rotate secret": _rotate,
    "rotate secret ending tokens": _rotate_ending_tokens,
    "revoke tokens": lambda w: services.participant_revoke_tokens(participant=w["a"].participant, reason="leak",
                                                                  acting_user=w["admin"]),
    "organisation update": lambda w: services.organisation_update(
        organisation=w["a"].participant.organisation, legal_name="Alpha Bank Renamed", acting_user=w["admin"]),
    "offboard": lambda w: services.participant_offboard(participant=w["a"].participant, reason="left",
                                                        acting_user=w["admin"], four_eyes=False),
}


@pytest.mark.parametrize("change", CHANGES)
def test_after_any_change_no_worker_serves_the_old_answer(world, change):
    workers = [Worker(), Worker()]
    before = []
    for worker in workers:
        with worker.active():
            before.append(snapshot(world))
            assert snapshot(world) == before[-1]  # the second read is served from the cache
    CHANGES[change](world)
    with Worker().active():
        fresh = snapshot(world)
    assert fresh != before[0]  # the change shows somewhere: the comparison below means something
    for worker in workers:
        with worker.active():
            assert snapshot(world) == fresh


@pytest.mark.parametrize("change", ["suspend", "key add", "rotate secret", "revoke tokens", "offboard",
                                    "organisation update"])
def test_a_change_to_one_participant_leaves_another_participants_answers_cached(world, change):
    worker = Worker()
    with worker.active():
        served(world, world["b_urls"])
        record_view(world["b"].client_id)
        CHANGES[change](world)
        hits, misses = worker.responses.hits, worker.responses.misses
        assert served(world, world["b_urls"]) == served(world, world["b_urls"])
        assert (worker.responses.hits - hits, worker.responses.misses - misses) == (6, 0)  # B's 3 answers, twice
        hits, misses = worker.clients.hits, worker.clients.misses
        record_view(world["b"].client_id)
        assert (worker.clients.hits - hits, worker.clients.misses - misses) == (1, 0)  # B's client record


def test_a_mapping_change_reloads_only_that_clients_record_and_no_list(world):
    worker = Worker()
    with worker.active():
        served(world, world["lists"])
        record_view(world["a"].client_id)
        record_view(world["b"].client_id)
        CHANGES["mapping grant"](world)
        hits = worker.responses.hits
        served(world, world["lists"])
        assert worker.responses.hits - hits == len(world["lists"])  # no answer shows mappings
        client_hits = worker.clients.hits
        record_view(world["a"].client_id)
        record_view(world["b"].client_id)
        assert worker.clients.hits - client_hits == 2
        assert "ocen.offer" in str(record_view(world["reader"].client_id))  # the reader's own: reloaded


def test_the_old_secret_fails_in_every_worker_after_a_rotation(world):
    workers = [Worker(), Worker()]
    a = world["a"]
    for worker in workers:
        with worker.active():
            assert world["token_for"](a.participant.client, a.client_secret).status_code == 200
    _rotate(world)
    for worker in workers:
        with worker.active():
            assert world["token_for"](a.participant.client, a.client_secret).status_code == 401


def test_a_suspended_provider_leaves_the_grants_of_clients_mapped_to_it_in_every_worker(world):
    reader, lender = world["reader"], world["a"]
    workers = [Worker(), Worker()]
    for worker in workers:
        with worker.active():
            response = world["token_for"](reader.participant.client, reader.client_secret,
                                          resource=lender.participant.audience)
            assert response.status_code == 200
    _suspend(world)
    for worker in workers:
        with worker.active():
            response = world["token_for"](reader.participant.client, reader.client_secret,
                                          resource=lender.participant.audience)
            assert response.status_code == 400 and response.json()["error"] == "invalid_target"


def test_a_cached_answer_costs_two_small_queries(world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    path = world["a_urls"][0]
    served(world, [path])
    with CaptureQueriesContext(connection) as queries:
        assert served(world, [path])[path][0] == 200
    sql = [query["sql"] for query in queries]
    # The caller's client generation read with the revocation check, then the participant's.
    assert len(sql) == 2, sql
    assert '"generation"' in sql[0] and "revokedtoken" in sql[0]
    assert '"generation"' in sql[1] and "registry_participant" in sql[1]
