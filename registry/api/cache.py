"""Rendered, signed registry responses, cached per process.

A provider polls the same few documents (a participant, its JWKS) over and over;
rendering and signing them each time costs several queries and an RSA signature.
Entries are keyed by request path and the client generation read while
authenticating the request: every registry change bumps the generation, so a
changed participant is never served from the cache. Entries also end when the
earliest key they show expires (keys leave the API by time, not by a change) and
after at most a minute.

Every signature carries its issued-at and the path it answers (``ocen_sdk.http``,
registry binding); a cached signature is renewed once it is ``SIGNATURE_MAX_AGE``
old, so a served signature is never older than that, and clients may refuse older
ones as replays.
"""

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from authservice.signing_keys import active_signer
from ocen_sdk.http import REGISTRY_BINDING
from ocen_sdk.jws import sign_detached

MAX_ENTRIES = 5000
MAX_AGE = timedelta(seconds=60)
SIGNATURE_MAX_AGE = 30.0


def registry_signature(payload: bytes, path: str) -> str | None:
    """The service's signature over ``payload`` (a body, or a 304's ETag), bound to the
    path it answers and the time."""
    signer = active_signer()
    if signer is None:
        return None
    return sign_detached(payload, signer.key, alg=signer.alg, kid=signer.kid,
                         extra_header={"htu": path, "iat": int(time.time())}, critical=REGISTRY_BINDING)


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
            current = _Signature(registry_signature(payload, path), now)
            self._signatures[key] = current
        return current.value


def render(data, *, valid_until: datetime | None) -> Rendered:
    body = JSONRenderer().render(data)
    cap = timezone.now() + MAX_AGE
    return Rendered(body=body, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"',
                    valid_until=min(valid_until, cap) if valid_until else cap)


class RenderedCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, Rendered] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0

    def get(self, key: tuple) -> Rendered | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.valid_until <= timezone.now():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple, entry: Rendered) -> None:
        """Store ``entry`` under ``key`` = (..., generation). A newer generation drops every
        entry of the older ones (no request can ask for them again: without this, a
        registry written every few seconds filled each worker with dead entries up to
        MAX_ENTRIES, seen as RSS growing by `make soak`)."""
        generation = key[-1]
        with self._lock:
            if generation > self._generation:
                self._generation = generation
                for stale in [k for k in self._entries if k[-1] < generation]:
                    del self._entries[stale]
            self._entries[key] = entry
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation = 0


rendered_cache = RenderedCache()


def earliest_key_expiry(participants) -> datetime | None:
    expiries = [key.not_after for participant in participants for key in participant.active_keys if key.not_after]
    return min(expiries) if expiries else None
