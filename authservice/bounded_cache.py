"""A per-process LRU cache bounded by the approximate bytes it holds, whose entries may
carry an expiry time.

The byte bound is what an operator sizes a worker by: entry counts say nothing when
one entry is a 300-byte client record and another a 50 KB list page. Expired entries
are swept as the cache is used (a heap of expiry times, popped on each access), so an
entry no request asks for again leaves on time instead of waiting for eviction; no
thread is needed. Hits, misses, evictions, expiries and the current size go to the
Prometheus metrics under the cache's name.
"""

import heapq
import itertools
import sys
import threading
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from authservice.observability import CACHE_BYTES, CACHE_ENTRIES, CACHE_EVENTS

# What an entry costs beyond its value: the key's tuple, the OrderedDict node, the heap
# item and the bookkeeping record, measured on CPython 3.11 to the nearest 50 bytes.
ENTRY_OVERHEAD = 350


@dataclass(slots=True)
class _Entry:
    value: Any
    size: int
    expires_at: float | None
    serial: int


class BoundedCache:
    """LRU by recency of use; at most ``max_bytes()`` approximate bytes.

    ``max_bytes`` is a callable so settings changed at run time (and in tests) apply
    on the next write. ``clock`` gives the time expiry is compared with.
    """

    def __init__(self, name: str, *, max_bytes: Callable[[], int], clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._expiries: list[tuple[float, int, Hashable]] = []
        self._serials = itertools.count()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = self.expired = 0

    # --- reads and writes ----------------------------------------------------------------

    def get(self, key: Hashable, *, valid: Callable[[Any], bool] | None = None) -> Any | None:
        """The live value under ``key`` (None when absent, expired, or refused by ``valid``:
        a stale value, which the caller then replaces); counts a hit or a miss."""
        with self._lock:
            now = self._clock()
            self._sweep(now)
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
                self._remove(key, "expiry")
                entry = None
            if entry is None or (valid is not None and not valid(entry.value)):
                self.misses += 1
                CACHE_EVENTS.labels(self.name, "miss").inc()
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            CACHE_EVENTS.labels(self.name, "hit").inc()
            return entry.value

    def put(self, key: Hashable, value: Any, *, size: int, expires_at: float | None = None) -> None:
        """Store ``value`` (``size`` approximate bytes, the entry overhead is added), then
        evict least recently used entries until the cache fits its bound again. A value
        larger than the whole bound is not stored."""
        size += ENTRY_OVERHEAD
        with self._lock:
            now = self._clock()
            self._sweep(now)
            if key in self._entries:
                self._remove(key, None)
            limit = self._max_bytes()
            if size > limit or (expires_at is not None and expires_at <= now):
                self._publish()
                return
            serial = next(self._serials)
            self._entries[key] = _Entry(value, size, expires_at, serial)
            self._bytes += size
            if expires_at is not None:
                heapq.heappush(self._expiries, (expires_at, serial, key))
            while self._bytes > limit:
                oldest = next(iter(self._entries))
                self._remove(oldest, "eviction")
            self._publish()

    def discard(self, key: Hashable) -> None:
        with self._lock:
            if key in self._entries:
                self._remove(key, None)
                self._publish()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._expiries.clear()
            self._bytes = 0
            self._publish()

    # --- what it holds -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def keys(self) -> list[Hashable]:
        """Least recently used first."""
        with self._lock:
            return list(self._entries)

    # --- internals (the lock is held) --------------------------------------------------------

    def _remove(self, key: Hashable, event: str | None) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size
        if event == "eviction":
            self.evictions += 1
            CACHE_EVENTS.labels(self.name, "eviction").inc()
        elif event == "expiry":
            self.expired += 1
            CACHE_EVENTS.labels(self.name, "expiry").inc()

    def _sweep(self, now: float) -> None:
        """Drop every entry whose time has come; heap items of entries already gone are
        skipped, and the heap is rebuilt when they outnumber the live ones."""
        removed = False
        while self._expiries and self._expiries[0][0] <= now:
            _, serial, key = heapq.heappop(self._expiries)
            entry = self._entries.get(key)
            if entry is not None and entry.serial == serial:
                self._remove(key, "expiry")
                removed = True
        if len(self._expiries) > 2 * len(self._entries) + 64:
            self._expiries = [(e.expires_at, e.serial, k) for k, e in self._entries.items()
                              if e.expires_at is not None]
            heapq.heapify(self._expiries)
        if removed:
            self._publish()

    def _publish(self) -> None:
        CACHE_ENTRIES.labels(self.name).set(len(self._entries))
        CACHE_BYTES.labels(self.name).set(self._bytes)


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
