"""Per-process cache of what the token endpoint needs about a client.

The hot path would otherwise spend several queries per token request loading the
client, its participant and its resource mappings. Each worker keeps those in
memory, stamped with the client's own generation (``OAuthClient.generation``); one
tiny indexed query per request reads that client's current generation, and every
change to the client, its participant, keys or mappings bumps it inside its own
transaction (``bump_client_generation``). So a suspension, an offboarding or a secret
rotation takes effect on the very next request in every worker, exactly as without a
cache, and a change to one client leaves every other client's record cached.

A client that does not exist has no generation (None): its "unknown" record is
cached too, and stops matching the moment the client is created. A deleted client's
generation reads as None, so its record stops matching too.

A caller that has read the generation already, in the same round trip as something
else it needed (the OAuth endpoints read it with the lockout check), pins it for the
rest of the request (``generation_pinned``) instead of reading it twice.

The cache is bounded by approximate bytes (``AUTHSERVICE_CLIENT_CACHE_MAX_BYTES``),
least recently used clients leaving first.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import F
from oauth2_provider.models import get_application_model

from authservice.bounded_cache import BoundedCache, approximate_size
from authservice.change_listener import listener
from authservice.conf import authservice_settings
from authservice.hooks import ClientGrants

DEFAULT_MAX_BYTES = 768 * 2**20


def _client_table() -> str:
    return get_application_model()._meta.db_table


def generation_sql() -> str:
    """A query with one parameter (a client_id) giving that client's generation, for a
    caller that reads it as a subquery of its own."""
    quote = connection.ops.quote_name
    return f"SELECT {quote('generation')} FROM {quote(_client_table())} WHERE {quote('client_id')} = %s"  # noqa: S608


_pinned_generation: ContextVar[tuple[str, int | None] | None] = ContextVar("pinned_client_generation",
                                                                          default=None)


MAX_CLIENT_ID_CHARS = 100  # django-oauth-toolkit's column


def lookup_value(client_id: str) -> str:
    """``client_id`` as a parameter of ``generation_sql``: one that cannot name a client
    (too long, or with a NUL, which PostgreSQL refuses in text) becomes "", which names none."""
    if len(client_id) > MAX_CLIENT_ID_CHARS or "\x00" in client_id:
        return ""
    return client_id


def current_generation(client_id: str) -> int | None:
    """The client's generation now; None when no client has that client_id."""
    pinned = _pinned_generation.get()
    if pinned is not None and pinned[0] == client_id:
        return pinned[1]
    if not lookup_value(client_id):
        return None
    with connection.cursor() as cursor:
        cursor.execute(generation_sql(), [client_id])
        row = cursor.fetchone()
    return row[0] if row else None


@contextmanager
def generation_pinned(client_id: str, value: int | None) -> Iterator[None]:
    """Within the block, ``client_id``'s generation is ``value`` (None: no such client),
    read by the caller at the start of the request. Other clients are read as usual."""
    token = _pinned_generation.set((client_id, value))
    try:
        yield
    finally:
        _pinned_generation.reset(token)


def bump_client_generation(client) -> None:
    """Mark the client's cached record stale in every worker. Call inside the changing
    transaction."""
    bump_client_generations([client.pk])


def bump_client_generations(pks: Iterable[int]) -> None:
    """Mark these clients' cached records stale. Several rows are locked in primary-key
    order, so two writers bumping overlapping sets cannot deadlock."""
    Client = get_application_model()
    ordered = sorted(set(pks))
    if len(ordered) > 1:
        list(Client.objects.select_for_update().filter(pk__in=ordered).order_by("pk").values_list("pk", flat=True))
    if ordered:
        Client.objects.filter(pk__in=ordered).update(generation=F("generation") + 1)
        if listener.trusted():  # this process drops them on commit; the others on the notice
            listener.clients_changed_here(Client.objects.filter(pk__in=ordered).values_list("client_id", flat=True))


@dataclass(frozen=True)
class ClientRecord:
    client: object  # the OAuthClient row as loaded
    grants: ClientGrants
    generation: int
    # Registered public keys (ocen_sdk.jws.VerificationKey) for private_key_jwt; ocen_sdk.jws
    # refuses any whose certificate has expired since it was loaded.
    keys: tuple = ()


def _max_bytes() -> int:
    return getattr(settings, "AUTHSERVICE_CLIENT_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES)


class _ClientCache:
    def __init__(self) -> None:
        self.entries = BoundedCache("clients", max_bytes=_max_bytes)

    def get(self, client_id: str) -> ClientRecord | None:
        """The active client's record, or None for an unknown or inactive client.

        While the change feed is shown to deliver (``authservice.change_listener``), a
        record cached in the feed's current epoch is current by construction: no query.
        Otherwise the client's generation is read and compared with the cached one; a
        record that still matches is kept (and stamped with the current epoch), so a
        feed that was lost or late costs one small query per client, never a reload."""
        epoch = listener.epoch
        if listener.trusted():
            cached = self.entries.get(client_id)
            # "unknown or inactive" is always re-read
            if cached is not None and cached[1] is not None and cached[2] == epoch:
                return cached[1]
        sequence = listener.sequence  # before reading: a notice after it keeps the record out
        generation = current_generation(client_id)  # before loading: a change after it shows next time
        cached = self.entries.get(client_id, valid=lambda entry: entry[0] == generation)
        if cached is not None:
            if cached[2] != epoch:
                self._store(client_id, sequence, (generation, cached[1], epoch))
            return cached[1]
        record = self._load(client_id, generation)
        self._store(client_id, sequence, (generation, record, epoch))
        return record

    def _store(self, client_id: str, sequence: int, entry: tuple) -> None:
        listener.store_if_current(sequence, lambda: self.entries.put(
            client_id, entry, size=approximate_size((client_id, entry[0], entry[1]))))

    @staticmethod
    def _load(client_id: str, generation: int | None) -> ClientRecord | None:
        if generation is None:
            return None
        Client = get_application_model()
        client = Client.objects.filter(client_id=client_id, is_active=True).first()
        if client is None:
            return None
        return ClientRecord(client=client, grants=authservice_settings.GRANTS_PROVIDER(client),
                            generation=generation, keys=tuple(authservice_settings.CLIENT_KEYS_PROVIDER(client)))

    def clear(self) -> None:
        self.entries.clear()


client_cache = _ClientCache()
listener.forget_client = client_cache.entries.discard
