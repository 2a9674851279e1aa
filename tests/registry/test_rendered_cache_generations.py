"""The rendered-response cache keeps no entry of a superseded generation of the same
document (generations are per document since invalidation is scoped: registry.invalidation).
`make soak` saw worker RSS grow under steady writes while superseded entries waited for the LRU."""

from datetime import timedelta

from django.utils import timezone

from registry.api.cache import RenderedCache, render


def entry():
    return render({"a": 1}, valid_until=timezone.now() + timedelta(minutes=1))


def test_a_newer_generation_of_a_document_drops_its_older_entry_only():
    cache = RenderedCache()
    for path in ("/p/1", "/p/2", "/list"):
        cache.put((path, 7), entry())
    cache.put(("/p/1", 8), entry())
    assert cache.get(("/p/1", 7)) is None and cache.get(("/p/1", 8)) is not None
    assert cache.get(("/p/2", 7)) is not None and cache.get(("/list", 7)) is not None  # unrelated: kept
    assert len(cache.entries) == 3


def test_many_writes_leave_one_generation_of_entries():
    cache = RenderedCache()
    for generation in range(1, 301):  # every document changed 300 times, each read after each change
        for path in ("/p/1", "/p/2", "/list"):
            cache.put((path, generation), entry())
    assert len(cache.entries) == 3


def test_an_answer_rendered_for_an_older_generation_is_still_served_to_its_key():
    cache = RenderedCache()
    cache.put(("/p/1", 8), entry())
    cache.put(("/p/1", 7), entry())  # a request authenticated just before the change, finishing after it
    assert cache.get(("/p/1", 7)) is not None and cache.get(("/p/1", 8)) is not None
