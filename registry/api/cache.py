"""Rendered, signed registry responses, cached per process.

A provider polls the same few documents (a participant, its JWKS) over and over;
rendering and signing them each time costs several queries and an RSA signature.
Entries are keyed by request path and the generation of what the answer shows, read
before it is built: the participant's own generation for its detail, JWKS and OCEN
role, the list generation for list pages (``registry.invalidation``). A change bumps
those of what it changed, so a changed participant is never served from the cache,
and one participant's change leaves every other participant's answers cached.
Entries also end when the earliest key they show expires (keys leave the API by time,
not by a change) and after at most a minute; expired entries are swept as the cache
is used. The cache holds at most ``REGISTRY_CACHE_MAX_BYTES`` (approximate), least
recently used answers leaving first.

Every signature carries its issued-at and the path it answers (``ocen_sdk.http``,
registry binding); a cached signature is renewed once it is ``SIGNATURE_MAX_AGE``
old, so a served signature is never older than that, and clients may refuse older
ones as replays.
"""

import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from authservice.bounded_cache import BoundedCache
from signing.responses import sign_response

DEFAULT_MAX_BYTES = 128 * 2**20
# An entry holds at most two signatures (of the body, of the ETag for 304s), each a
# compact JWS header and signature: at most this many bytes each with RSA-4096.
SIGNATURE_BYTES = 1200
MAX_AGE = timedelta(seconds=60)
SIGNATURE_MAX_AGE = 30.0


# Its old name here.
registry_signature = sign_response


@dataclass
class _Signature:
    value: str | None
    signed_at: float


@dataclass
class Rendered:
    body: bytes
    etag: str
    valid_until: datetime
    _signatures: dict[tuple[str, bool], _Signature] = field(default_factory=dict, repr=False)

    def signature(self, path: str, *, not_modified: bool = False) -> str | None:
        """The signature of the body (or, for a 304, of the ETag), renewed when stale."""
        key = (path, not_modified)
        current = self._signatures.get(key)
        now = time.monotonic()
        if current is None or now - current.signed_at > SIGNATURE_MAX_AGE:
            payload = self.etag.encode() if not_modified else self.body
            current = _Signature(sign_response(payload, path), now)
            self._signatures[key] = current
        return current.value


def render(data, *, valid_until: datetime | None) -> Rendered:
    body = JSONRenderer().render(data)
    cap = timezone.now() + MAX_AGE
    return Rendered(body=body, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"',
                    valid_until=min(valid_until, cap) if valid_until else cap)


def _newer(generation, than) -> bool:
    try:
        return generation > than
    except TypeError:  # generations of another shape: never treated as superseding
        return False


def _now() -> float:
    return timezone.now().timestamp()


def _max_bytes() -> int:
    return getattr(settings, "REGISTRY_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES)


class RenderedCache:
    def __init__(self) -> None:
        self.entries = BoundedCache("registry_responses", max_bytes=_max_bytes, clock=_now)
        # The newest generation stored per path: an older one is never asked for again by a
        # new request, so it goes at once instead of waiting for the LRU (seen by `make soak`
        # as RSS growing under steady writes).
        self._latest: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Rendered | None:
        return self.entries.get(key)

    def put(self, key: tuple, entry: Rendered) -> None:
        size = len(entry.body) + len(entry.etag) + 2 * SIGNATURE_BYTES + sum(len(str(part)) for part in key)
        path, generation = key[0], key[-1]
        with self._lock:
            latest = self._latest.get(path)
            if latest is not None and latest != generation and _newer(generation, latest):
                self.entries.discard((path, latest))
            if latest is None or _newer(generation, latest):
                self._latest[path] = generation
                if len(self._latest) > 4 * max(len(self.entries), 1024):  # paths whose entries left the LRU
                    self._latest = {k: v for k, v in self._latest.items() if (k, v) in self.entries}
        self.entries.put(key, entry, size=size, expires_at=entry.valid_until.timestamp())

    def clear(self) -> None:
        with self._lock:
            self._latest.clear()
        self.entries.clear()


rendered_cache = RenderedCache()


def earliest_key_expiry(participants) -> datetime | None:
    expiries = [key.not_after for participant in participants for key in participant.active_keys if key.not_after]
    return min(expiries) if expiries else None
