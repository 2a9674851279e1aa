"""A per-process LRU cache bounded by the approximate bytes it holds, whose entries may
carry an expiry time: ``cachetools.TLRUCache`` (sized by each entry's bytes, expiring
each entry at its own time), behind a lock, counted in the metrics.

The byte bound is what an operator sizes a worker by: entry counts say nothing when
one entry is a 300-byte client record and another a 50 KB list page. Expired entries
are swept as the cache is used (TLRUCache's ``expire``), so an entry no request asks
for again leaves on time instead of waiting for eviction; no thread is needed. Hits,
misses, evictions, expiries and the current size go to the Prometheus metrics under
the cache's name.
"""

import math
import sys
import threading
import time
import types
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import cachetools

from authservice.observability import CACHE_BYTES, CACHE_ENTRIES, CACHE_EVENTS

# What an entry costs beyond its value: the key, the cache's own records for it (its
# dict slots, its place in the recency order and the expiry heap) and the entry tuple,
# measured on CPython 3.11 to the nearest 50 bytes.
ENTRY_OVERHEAD = 350


class _Entry(NamedTuple):
    value: Any
    size: int
    expires_at: float | None


class _Store(cachetools.TLRUCache):
    """TLRUCache whose evictions and expiries are counted by ``owner``."""

    def __init__(self, owner: "BoundedCache", maxsize: int) -> None:
        super().__init__(maxsize, ttu=_expiry, timer=owner._clock, getsizeof=_entry_size)
        self.owner = owner

    def popitem(self):
        item = super().popitem()
        self.owner._count("eviction")
        return item

    def expire(self, time=None):
        expired = super().expire(time)
        for _ in expired:
            self.owner._count("expiry")
        return expired


def _expiry(key: Hashable, entry: _Entry, now: float) -> float:
    return math.inf if entry.expires_at is None else entry.expires_at


def _entry_size(entry: _Entry) -> int:
    return entry.size


class BoundedCache:
    """LRU by recency of use; at most ``max_bytes()`` approximate bytes.

    ``max_bytes`` is a callable so settings changed at run time (and in tests) apply
    on the next write. ``clock`` gives the time expiry is compared with.
    """

    def __init__(self, name: str, *, max_bytes: Callable[[], int], clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = self.expired = 0
        self._store = _Store(self, max_bytes())

    # --- reads and writes ----------------------------------------------------------------

    def get(self, key: Hashable, *, valid: Callable[[Any], bool] | None = None) -> Any | None:
        """The live value under ``key`` (None when absent, expired, or refused by ``valid``:
        a stale value, which the caller then replaces); counts a hit or a miss."""
        with self._lock:
            if self._store.expire():
                self._publish()
            entry = self._store.get(key)  # a use: most recently used now
            if entry is None or (valid is not None and not valid(entry.value)):
                self.misses += 1
                CACHE_EVENTS.labels(self.name, "miss").inc()
                return None
            self.hits += 1
            CACHE_EVENTS.labels(self.name, "hit").inc()
            return entry.value

    def put(self, key: Hashable, value: Any, *, size: int, expires_at: float | None = None) -> None:
        """Store ``value`` (``size`` approximate bytes, the entry overhead is added), then
        evict least recently used entries until the cache fits its bound again. A value
        larger than the whole bound is not stored."""
        with self._lock:
            limit = self._max_bytes()
            if limit != self._store.maxsize:
                self._resize(limit)
            self._store.pop(key, None)
            # TLRUCache refuses an entry larger than the bound (ValueError) before it evicts
            # anything, and skips one already expired.
            if size + ENTRY_OVERHEAD <= limit:
                self._store[key] = _Entry(value, size + ENTRY_OVERHEAD, expires_at)
            else:
                self._store.expire()
            self._publish()

    def discard(self, key: Hashable) -> None:
        with self._lock:
            if self._store.pop(key, None) is not None:
                self._publish()

    def clear(self) -> None:
        with self._lock:
            self._store = _Store(self, self._max_bytes())
            self._publish()

    # --- what it holds -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._store

    @property
    def size_bytes(self) -> int:
        return self._store.currsize

    def keys(self) -> list[Hashable]:
        """The keys of the live entries (in no particular order)."""
        with self._lock:
            return list(self._store)

    # --- internals (the lock is held) --------------------------------------------------------

    def _resize(self, limit: int) -> None:
        """A new bound (a setting changed): the entries move to a store of that size, the
        ones that no longer fit evicted."""
        old, self._store = self._store, _Store(self, limit)
        for key, entry in old.items():
            if entry.size <= limit:
                self._store[key] = entry

    def _count(self, event: str) -> None:
        if event == "eviction":
            self.evictions += 1
        else:
            self.expired += 1
        CACHE_EVENTS.labels(self.name, event).inc()

    def _publish(self) -> None:
        CACHE_ENTRIES.labels(self.name).set(len(self._store))
        CACHE_BYTES.labels(self.name).set(self._store.currsize)


# --- Sizes ----------------------------------------------------------------------------------------

_ATOMIC = (str, bytes, bytearray, int, float, bool, type(None), complex)
_NOT_OWNED = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)


def approximate_size(value: Any, *, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """Bytes ``value`` keeps alive: ``sys.getsizeof`` summed over the containers,
    instance dicts and slots it reaches (each object once; classes, functions and
    modules, which the cache does not own, not at all). C objects such as a
    cryptography key count only their Python header: an underestimate of a few
    hundred bytes each."""
    seen = _seen if _seen is not None else set()
    if id(value) in seen or _depth > 12 or isinstance(value, _NOT_OWNED):
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, _ATOMIC):
        return size
    children: list[Any] = []
    if isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        children = list(value)
    else:
        if hasattr(value, "__dict__"):
            children.append(vars(value))
        slots = getattr(type(value), "__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if hasattr(value, slot):
                children.append(getattr(value, slot))
    return size + sum(approximate_size(child, _seen=seen, _depth=_depth + 1) for child in children)
