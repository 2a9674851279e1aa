from django.core.management.base import BaseCommand, CommandError

from registry.audit import verify_chain


class Command(BaseCommand):
    help = "Recompute the audit log's keyed hash chain and report the first broken link."

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.ok:
            raise CommandError(f"Audit log chain broken at event #{report.broken_at}: {report.reason} "
                               f"({report.checked} events verified before it).")
        self.stdout.write(f"Audit log intact: {report.checked} events verified.")
        if report.links_by_key:
            keys = ", ".join(f"{key_id} ({count})" for key_id, count in sorted(
                report.links_by_key.items(), key=lambda item: (-item[1], item[0])))
            self.stdout.write(f"Links keyed with audit keys: {keys}.")
