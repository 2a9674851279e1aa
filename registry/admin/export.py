"""The audit log as CSV: one row per event, streamed, secrets redacted, cells a spreadsheet
shows as text."""

import csv
import json
from collections.abc import Iterator

CSV_COLUMNS = ["sequence", "occurred_at", "action", "actor", "participant_id", "organisation", "before", "after",
               "key_id", "prev_hash", "hash"]


# The audit records no secret; should a future event carry one by mistake, the export drops it.
SECRET_KEYS = {"client_secret", "secret", "password", "private_key"}


def _redacted(data: dict) -> dict:
    return {key: "[redacted]" if key.lower() in SECRET_KEYS else value for key, value in data.items()}


def _csv_cell(value) -> str:
    """Text a spreadsheet shows as text: a leading =, +, - or @ would start a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def audit_csv_rows(queryset) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in queryset.iterator(chunk_size=2000):
        participant_id = event.participant.participant_id if event.participant_id else ""
        yield writer.writerow([_csv_cell(value) for value in (
            event.sequence, event.occurred_at.isoformat(), event.action, event.actor_label, participant_id,
            event.organisation.legal_name if event.organisation_id else "",
            json.dumps(_redacted(event.before), sort_keys=True, default=str),
            json.dumps(_redacted(event.after), sort_keys=True, default=str),
            event.key_id, event.prev_hash, event.hash)])
