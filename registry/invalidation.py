"""What a registry change makes stale in the workers' caches, and nothing more.

Every cached answer is stamped with the generation of what it shows, read before it
was built: a participant's detail, JWKS and OCEN role with the participant's
``generation``, every page of every participant list with the one list generation
(``ListGeneration``), a worker's client record with its client's ``generation``
(``authservice.clientcache``). A change bumps, inside its own transaction, exactly
the generations of what it changed, so the next request in any worker sees it, and
every other participant's answers and every other client's record stay cached.

The services call these before the audit event, keeping the lock order of
``registry.services``: participant rows (in primary-key order when several), client
rows (several at once, in primary-key order, before any of them is locked alone: a
status change calls ``participant_changed`` before the client service), the list
generation, the audit chain head.
"""

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from authservice.clientcache import bump_client_generations
from registry.models import ListGeneration, Organisation, Participant, ResourceMapping

LIST_GENERATION_ID = 1


def participant_changed(participant: Participant, *, as_provider: bool = False) -> None:
    """What the registry shows of ``participant`` changed (its status, keys, endpoints,
    client, tokens-not-before): its own answers, the lists, and its client's record.

    ``as_provider``: its standing as a provider changed too (status), so the grants of
    every client mapped to it: their records go stale as well.
    """
    Participant.objects.filter(pk=participant.pk).update(generation=F("generation") + 1)
    clients = set(Participant.objects.filter(pk=participant.pk, client__isnull=False)
                  .values_list("client_id", flat=True))
    if as_provider:
        clients |= set(ResourceMapping.objects.filter(provider=participant, client__client__isnull=False)
                       .values_list("client__client_id", flat=True))
    bump_client_generations(clients)
    _bump_lists()


def grants_changed(participant: Participant) -> None:
    """Only what ``participant``'s client may be granted changed (a resource mapping):
    its client's record. No registry answer shows mappings."""
    bump_client_generations(Participant.objects.filter(pk=participant.pk, client__isnull=False)
                            .values_list("client_id", flat=True))


def lock_participants_of(organisation: Organisation) -> None:
    """Lock the organisation's participants in primary-key order, as every writer locking
    two participants locks them. Call before locking the organisation row itself: a
    participant's writer, holding its participant row, takes a key-share lock on that
    row when it writes its audit event."""
    list(Participant.objects.filter(organisation=organisation).select_for_update().order_by("pk")
         .values_list("pk", flat=True))


def organisation_changed(organisation: Organisation) -> None:
    """The organisation's details changed: every answer about its participants, and the
    lists. Client records hold no organisation details."""
    lock_participants_of(organisation)
    Participant.objects.filter(organisation=organisation).update(generation=F("generation") + 1)
    _bump_lists()


def _bump_lists() -> None:
    if ListGeneration.objects.filter(pk=LIST_GENERATION_ID).update(value=F("value") + 1):
        return
    try:
        with transaction.atomic():
            ListGeneration.objects.create(pk=LIST_GENERATION_ID, value=1)
    except IntegrityError:
        ListGeneration.objects.filter(pk=LIST_GENERATION_ID).update(value=F("value") + 1)


# --- Reads (before an answer is built) ---------------------------------------------------------

def participant_generation(participant_id) -> int | None:
    """The participant's generation now; None when no participant has that id."""
    return Participant.objects.filter(participant_id=participant_id).values_list("generation", flat=True).first()


def list_generation() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name('value')} FROM "  # noqa: S608
                       f"{connection.ops.quote_name(ListGeneration._meta.db_table)} WHERE id = %s",
                       [LIST_GENERATION_ID])
        row = cursor.fetchone()
    return row[0] if row else 0
