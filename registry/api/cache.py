"""Rendered, signed registry responses, cached per process.

A provider polls the same few documents (a participant, its JWKS) over and over;
rendering and signing them each time costs several queries and an RSA signature.
Entries are keyed by request path and the client generation read while
authenticating the request: every registry change bumps the generation, so a
changed participant is never served from the cache. Entries also end when the
earliest key they show expires (keys leave the API by time, not by a change) and
after at most a minute.
"""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from authservice.signing_keys import active_signer
from signing.jws import sign_detached

MAX_ENTRIES = 5000
MAX_AGE = timedelta(seconds=60)


@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str
    signature: str | None
    valid_until: datetime


def render_signed(data, *, valid_until: datetime | None) -> Rendered:
    body = JSONRenderer().render(data)
    signer = active_signer()
    signature = sign_detached(body, signer.key, alg=signer.alg, kid=signer.kid) if signer else None
    cap = timezone.now() + MAX_AGE
    return Rendered(body=body, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"', signature=signature,
                    valid_until=min(valid_until, cap) if valid_until else cap)


class RenderedCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, Rendered] = OrderedDict()
        self._lock = threading.Lock()

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
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


rendered_cache = RenderedCache()


def earliest_key_expiry(participants) -> datetime | None:
    expiries = [key.not_after for participant in participants for key in participant.active_keys if key.not_after]
    return min(expiries) if expiries else None
