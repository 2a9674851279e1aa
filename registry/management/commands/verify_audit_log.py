import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from registry.audit import (
    Checkpoint,
    CheckpointInvalid,
    checkpoint_verify,
    last_verified,
    record_verified,
    verify_chain,
)
from registry.audit_status import record_verification

# A checkpoint is a few hundred bytes; anything much larger is not one.
MAX_CHECKPOINT_BYTES = 4096


class Command(BaseCommand):
    help = ("Recompute the audit log's keyed hash chain and report every broken link. By default "
            "incremental: only the events after the last verified checkpoint (stored, signed, by each "
            "successful verification) are verified, once that checkpoint's event is found unchanged; --full "
            "recomputes every link (run it periodically too). With --checkpoint, the whole chain is verified "
            "and must still hold the checkpoint's event, unchanged.")

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", metavar="FILE",
                            help="a checkpoint printed by audit_checkpoint (kept off the database); implies --full")
        parser.add_argument("--full", action="store_true",
                            help="recompute every link, not only those after the last verified checkpoint")

    def handle(self, *args, checkpoint=None, full=False, **options):
        expected = read_checkpoint(checkpoint) if checkpoint else None
        since = None if full or expected is not None else last_verified()
        report = verify_chain(expected, since=since)
        record_verification(report, checkpoint_sequence=expected.sequence if expected else None,
                            checkpoint_issued_at=expected.issued_at if expected else "")
        if not report.ok:
            message = (f"Audit log chain broken at event #{report.broken_at}: {report.reason} "
                       f"({report.checked} events verified before it).")
            if len(report.breaks) > 1:
                listed = "\n".join(f"  #{sequence}: {reason}" for sequence, reason in report.breaks)
                message += f"\n{len(report.breaks)} broken events in all:\n{listed}"
            raise CommandError(message)
        record_verified(report)
        if since is None:
            self.stdout.write(f"Audit log intact: {report.checked} events verified.")
        else:
            self.stdout.write(f"Audit log intact: {report.checked} events; {report.recomputed} verified after "
                              f"event #{since.sequence}, the last verified checkpoint (verified {since.issued_at}). "
                              f"--full verifies every link.")
        if expected is not None:
            self.stdout.write(f"Checkpoint holds: event #{expected.sequence} still has hash {expected.hash} "
                              f"(checkpoint issued {expected.issued_at}).")
        if report.links_by_key:
            keys = ", ".join(f"{key_id} ({count})" for key_id, count in sorted(
                report.links_by_key.items(), key=lambda item: (-item[1], item[0])))
            scope = "" if since is None else f" (of the {report.recomputed} verified now)"
            self.stdout.write(f"Links keyed with audit keys{scope}: {keys}.")


def read_checkpoint(path: str) -> Checkpoint:
    """Read, parse and verify a checkpoint file; every failure is a CommandError."""
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_CHECKPOINT_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"Cannot read checkpoint {path}: {exc.strerror or exc}.") from exc
    if len(raw) > MAX_CHECKPOINT_BYTES:
        raise CommandError(f"{path} is too large to be an audit checkpoint.")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CommandError(f"{path} is not a JSON document.") from exc
    try:
        return checkpoint_verify(document)
    except CheckpointInvalid as exc:
        raise CommandError(f"{path} is not a valid audit checkpoint: {exc}.") from exc
