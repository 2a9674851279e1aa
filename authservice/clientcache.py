"""Per-process cache of what the token endpoint needs about a client.

The hot path would otherwise spend several queries per token request loading the
client, its participant and its resource mappings. Each worker keeps those in
memory, stamped with the client generation; one tiny query per request reads the
current generation, and every change to a client, participant, key or mapping bumps
it inside its own transaction. So a suspension, an offboarding or a secret rotation
takes effect on the very next request in every worker, exactly as without a cache.

A caller that has read the generation already, in the same round trip as something
else it needed (the OAuth endpoints read it with the lockout check), pins it for the
rest of the request (``generation_pinned``) instead of reading it twice.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from oauth2_provider.models import get_application_model

from authservice.conf import authservice_settings
from authservice.grants import ClientGrants
from authservice.models import ClientGeneration

MAX_ENTRIES = 10_000


# The query's text, for a caller that reads the generation as a subquery of its own.
GENERATION_SQL = f"SELECT value FROM {ClientGeneration._meta.db_table} WHERE id = 1"  # noqa: S608
_pinned_generation: ContextVar[int | None] = ContextVar("pinned_client_generation", default=None)


def current_generation() -> int:
    pinned = _pinned_generation.get()
    if pinned is not None:
        return pinned
    with connection.cursor() as cursor:
        cursor.execute(GENERATION_SQL)
        row = cursor.fetchone()
    return row[0] if row else 0


@contextmanager
def generation_pinned(value: int | None) -> Iterator[None]:
    """Within the block, the generation is ``value`` (None: 0, no row yet), read by the
    caller at the start of the request."""
    token = _pinned_generation.set(value or 0)
    try:
        yield
    finally:
        _pinned_generation.reset(token)


def bump_generation() -> None:
    """Mark every cached client record stale. Call inside the changing transaction."""
    if ClientGeneration.objects.filter(pk=1).update(value=F("value") + 1):
        return
    try:
        with transaction.atomic():
            ClientGeneration.objects.create(pk=1, value=1)
    except IntegrityError:
        ClientGeneration.objects.filter(pk=1).update(value=F("value") + 1)


@dataclass(frozen=True)
class ClientRecord:
    client: object  # the OAuthClient row as loaded
    grants: ClientGrants
    generation: int
    # Registered public keys (ocen_sdk.jws.VerificationKey) for private_key_jwt; ocen_sdk.jws
    # refuses any whose certificate has expired since it was loaded.
    keys: tuple = ()


class _ClientCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[str, ClientRecord | None] = OrderedDict()
        self._generation: int | None = None
        self._lock = threading.Lock()

    def get(self, client_id: str) -> ClientRecord | None:
        """The active client's record, or None for an unknown or inactive client."""
        generation = current_generation()
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = generation
            elif client_id in self._entries:
                self._entries.move_to_end(client_id)
                return self._entries[client_id]
        record = self._load(client_id, generation)
        with self._lock:
            if generation == self._generation:
                self._entries[client_id] = record
                while len(self._entries) > MAX_ENTRIES:
                    self._entries.popitem(last=False)
        return record

    @staticmethod
    def _load(client_id: str, generation: int) -> ClientRecord | None:
        Client = get_application_model()
        client = Client.objects.filter(client_id=client_id, is_active=True).first()
        if client is None:
            return None
        return ClientRecord(client=client, grants=authservice_settings.GRANTS_PROVIDER(client),
                            generation=generation, keys=tuple(authservice_settings.CLIENT_KEYS_PROVIDER(client)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation = None


client_cache = _ClientCache()
