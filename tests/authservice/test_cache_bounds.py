"""The per-worker caches: bounded by approximate bytes, least recently used out first,
expired entries swept as the cache is used, and their counts in the metrics."""

import re

import pytest
from django.test import override_settings

from authservice.bounded_cache import ENTRY_OVERHEAD, BoundedCache, approximate_size
from authservice.clientcache import client_cache
from registry.api.cache import rendered_cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(limit_entries: int, *, clock=None, name="test") -> BoundedCache:
    """A cache holding ``limit_entries`` entries of 100 bytes each."""
    return BoundedCache(name, max_bytes=lambda: limit_entries * (100 + ENTRY_OVERHEAD), clock=clock or Clock())


def test_the_cache_never_holds_more_bytes_than_its_bound():
    entries = cache(3)
    for key in range(10):
        entries.put(key, f"value {key}", size=100)
        assert entries.size_bytes <= 3 * (100 + ENTRY_OVERHEAD)
    assert len(entries) == 3 and entries.evictions == 7


def test_a_large_entry_pushes_out_several_small_ones():
    entries = cache(4)
    for key in "abcd":
        entries.put(key, key, size=100)
    big = 2 * (100 + ENTRY_OVERHEAD) + 100  # with its overhead: more than two small entries, less than three
    entries.put("big", "x", size=big - ENTRY_OVERHEAD)
    assert sorted(entries.keys()) == ["big", "d"] and entries.evictions == 3  # a, b, c: the least recently used
    assert entries.size_bytes <= 4 * (100 + ENTRY_OVERHEAD)


def test_a_value_larger_than_the_bound_is_not_stored_and_evicts_nothing():
    entries = cache(2)
    entries.put("a", "a", size=100)
    entries.put("huge", "x", size=10 * (100 + ENTRY_OVERHEAD))
    assert entries.keys() == ["a"] and entries.get("huge") is None


def test_the_least_recently_used_entry_leaves_first():
    entries = cache(3)
    for key in "abc":
        entries.put(key, key, size=100)
    assert entries.get("a") == "a"  # a is now the most recently used
    entries.put("d", "d", size=100)
    assert sorted(entries.keys()) == ["a", "c", "d"]  # b, the least recently used, went
    assert entries.get("b") is None


def test_replacing_a_value_does_not_count_it_twice():
    entries = cache(3)
    for _ in range(5):
        entries.put("a", "a", size=100)
    assert len(entries) == 1 and entries.size_bytes == 100 + ENTRY_OVERHEAD and entries.evictions == 0


def test_expired_entries_are_swept_without_being_asked_for():
    clock = Clock()
    entries = cache(100, clock=clock)
    for key in range(10):
        entries.put(("short", key), key, size=100, expires_at=clock.now + 5)
    entries.put("long", "kept", size=100, expires_at=clock.now + 60)
    entries.put("forever", "kept", size=100)
    clock.now += 6
    entries.get("long")  # any use sweeps: the short-lived entries leave though nobody asked for them
    assert sorted(map(str, entries.keys())) == ["forever", "long"]
    assert entries.expired == 10 and entries.size_bytes == 2 * (100 + ENTRY_OVERHEAD)
    clock.now += 60
    entries.put("other", "x", size=100)
    assert sorted(entries.keys()) == ["forever", "other"]


def test_an_expired_entry_is_never_served():
    clock = Clock()
    entries = cache(10, clock=clock)
    entries.put("a", "a", size=100, expires_at=clock.now + 1)
    clock.now += 1
    assert entries.get("a") is None and entries.misses == 1


def test_replaced_and_evicted_entries_are_neither_counted_twice_nor_kept():
    clock = Clock()
    entries = cache(10, clock=clock)
    for round_ in range(1000):
        entries.put(round_ % 20, round_, size=100, expires_at=clock.now + 3600)
    assert len(entries) == 10 and entries.size_bytes == 10 * (100 + ENTRY_OVERHEAD)
    assert sorted(entries.keys()) == list(range(10, 20))  # the last ten written
    assert entries.evictions == 990 and entries.expired == 0


def test_a_smaller_bound_applies_on_the_next_write():
    limit = {"entries": 5}
    entries = BoundedCache("resized", max_bytes=lambda: limit["entries"] * (100 + ENTRY_OVERHEAD), clock=Clock())
    for key in range(5):
        entries.put(key, key, size=100)
    limit["entries"] = 2
    entries.put("new", "new", size=100)
    assert len(entries) == 2 and "new" in entries
    assert entries.size_bytes <= 2 * (100 + ENTRY_OVERHEAD)


def test_a_refused_stale_value_counts_as_a_miss():
    entries = cache(10)
    entries.put("client", (1, "record"), size=100)
    assert entries.get("client", valid=lambda value: value[0] == 2) is None
    assert (entries.hits, entries.misses) == (0, 1)
    assert entries.get("client", valid=lambda value: value[0] == 1) == (1, "record")


def test_approximate_size_counts_what_a_value_holds():
    small, large = approximate_size({"a": "x"}), approximate_size({"a": "x" * 10_000})
    assert large - small >= 9_999
    shared = "y" * 5000
    assert approximate_size([shared, shared]) < approximate_size([shared, "z" * 5000])  # each object once


@pytest.mark.django_db
def test_the_client_cache_is_bounded_by_its_setting(make_client):
    clients = [make_client()[0] for _ in range(6)]
    for oauth_client in clients:
        client_cache.get(oauth_client.client_id)
    one_entry = client_cache.entries.size_bytes // len(client_cache.entries)
    client_cache.clear()
    with override_settings(AUTHSERVICE_CLIENT_CACHE_MAX_BYTES=int(3.5 * one_entry)):
        for oauth_client in clients:
            assert client_cache.get(oauth_client.client_id).client.pk == oauth_client.pk
        assert len(client_cache.entries) == 3
        assert sorted(client_cache.entries.keys()) == sorted(c.client_id for c in clients[3:])


def test_the_registry_response_cache_is_bounded_by_its_setting():
    from registry.api.cache import render

    rendered_cache.clear()
    with override_settings(REGISTRY_CACHE_MAX_BYTES=20_000):
        for number in range(50):
            rendered_cache.put((f"/registry/v1/participants/{number}", 0), render({"n": "x" * 1000},
                                                                                valid_until=None))
        assert 0 < rendered_cache.entries.size_bytes <= 20_000
        assert len(rendered_cache.entries) < 50 and rendered_cache.entries.evictions > 0
    rendered_cache.clear()


def _metric(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{selector}\}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{selector}}} not in the metrics"
    return float(match.group(1))


@pytest.mark.django_db
def test_cache_hits_misses_evictions_and_size_are_in_the_metrics(client):
    def scrape() -> str:
        return client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()

    entries = BoundedCache("metrics_test", max_bytes=lambda: 2 * (100 + ENTRY_OVERHEAD))
    before = scrape()
    entries.put("a", 1, size=100)
    entries.put("b", 2, size=100)
    entries.put("c", 3, size=100)  # evicts a
    entries.get("a")  # miss
    entries.get("b")  # hit
    after = scrape()

    def delta(event: str) -> float:
        name = "authservice_cache_events_total"
        previous = _metric(before, name, cache="metrics_test", event=event) if "metrics_test" in before else 0
        return _metric(after, name, cache="metrics_test", event=event) - previous

    assert (delta("hit"), delta("miss"), delta("eviction")) == (1, 1, 1)
    assert _metric(after, "authservice_cache_entries", cache="metrics_test") == 2
    assert _metric(after, "authservice_cache_bytes", cache="metrics_test") == 2 * (100 + ENTRY_OVERHEAD)
