"""Token endpoint activity per participant: when its client last got a token, and how
many tokens it got and how many of its client authentications failed in the last 24
hours.

Cheap on the token endpoint: ``record_token_request`` (the service's
``AUTHSERVICE["TOKEN_ACTIVITY_RECORDER"]``) only adds to counters in this process's
memory. They are added to hourly rows (``ParticipantActivity``: one per participant and
hour, never one per token) by one UPSERT batch, run by the first request that finds them
older than ``FLUSH_SECONDS``, when too many client ids are held, when a serving worker
exits (``authservice.serve``), and before they are read here. Client
ids that belong to no participant are dropped then, so guessed client_ids add no rows.
Counts are best-effort: a worker killed outright loses at most its last few seconds.
"""

import logging
import threading
import time
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from registry.models import Participant, ParticipantActivity

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0
MAX_PENDING = 5000
MAX_CLIENT_ID_CHARS = 100

_lock = threading.Lock()
# (client_id, hour) -> [issued, failed, last_token_at]
_pending: dict[tuple[str, datetime], list] = {}
_last_flush = time.monotonic()


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def record_token_request(*, client_id: str, issued: bool) -> None:
    """Count a token issued to ``client_id``, or a failed authentication as it."""
    now = timezone.now()
    with _lock:
        counts = _pending.setdefault((client_id[:MAX_CLIENT_ID_CHARS], _hour(now)), [0, 0, None])
        if issued:
            counts[0] += 1
            counts[2] = now
        else:
            counts[1] += 1
        due = time.monotonic() - _last_flush >= FLUSH_SECONDS or len(_pending) >= MAX_PENDING
    if due:
        flush()


def flush() -> None:
    """Add this process's counts to the hourly rows."""
    global _last_flush
    with _lock:
        batch = dict(_pending)
        _pending.clear()
        _last_flush = time.monotonic()
    if not batch:
        return
    try:
        _write(batch)
    except DatabaseError:
        logger.warning("could not write %d token activity counters; they are dropped", len(batch), exc_info=True)


def _write(batch: dict[tuple[str, datetime], list]) -> None:
    participants = dict(Participant.objects.filter(client__client_id__in={client_id for client_id, _ in batch})
                        .values_list("client__client_id", "pk"))
    ops = connection.ops
    rows = [(participants[client_id], ops.adapt_datetimefield_value(hour), issued, failed,
             ops.adapt_datetimefield_value(last))
            for (client_id, hour), (issued, failed, last) in batch.items() if client_id in participants]
    if not rows:
        return
    table = ops.quote_name(ParticipantActivity._meta.db_table)
    # Plain SQL: the ORM's upsert sets values, and these must add to what other workers wrote.
    sql = (f"INSERT INTO {table} (participant_id, hour, issued, failed, last_token_at) "  # noqa: S608
           f"VALUES (%s, %s, %s, %s, %s) ON CONFLICT (participant_id, hour) DO UPDATE SET "
           f"issued = {table}.issued + excluded.issued, failed = {table}.failed + excluded.failed, "
           f"last_token_at = CASE WHEN excluded.last_token_at IS NULL THEN {table}.last_token_at "
           f"WHEN {table}.last_token_at IS NULL OR excluded.last_token_at > {table}.last_token_at "
           f"THEN excluded.last_token_at ELSE {table}.last_token_at END")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def participant_activity(participant: Participant) -> dict:
    """``last_token_at`` (None if never), ``issued_24h`` and ``failed_24h``: the hourly
    rows of the current hour and the 23 before it."""
    flush()
    rows = ParticipantActivity.objects.filter(participant=participant)
    recent = rows.filter(hour__gte=_hour(timezone.now()) - timedelta(hours=23)).aggregate(
        issued=Sum("issued"), failed=Sum("failed"))
    return {"last_token_at": rows.aggregate(last=Max("last_token_at"))["last"],
            "issued_24h": recent["issued"] or 0, "failed_24h": recent["failed"] or 0}
