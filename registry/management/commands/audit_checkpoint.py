from django.core.management.base import CommandError

from registry.audit import checkpoint_sign, record_verified, verify_chain
from registry.audit_status import record_verification
from registry.management.commands._base import RegistryCommand


class Command(RegistryCommand):
    help = ("Verify the audit log, then print a signed checkpoint of its last event as one JSON "
            "document. Keep it off the database server; verify_audit_log --checkpoint checks against it.")

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.ok:
            record_verification(report)
            raise CommandError(f"Audit log chain broken at event #{report.broken_at}: {report.reason}; "
                               f"no checkpoint issued.")
        if not report.checked:
            raise CommandError("The audit log is empty: there is nothing to checkpoint.")
        record_verified(report)
        checkpoint = checkpoint_sign(report)
        record_verification(report, checkpoint_sequence=checkpoint["sequence"],
                            checkpoint_issued_at=checkpoint["issued_at"])
        self.emit_json(checkpoint)
