from django.core.management.base import BaseCommand

from authservice.replay import purge_expired_nonces


class Command(BaseCommand):
    help = "Delete expired single-use records (client-assertion jtis). Schedule it next to cleartokens."

    def handle(self, *args, **options):
        self.stdout.write(f"Deleted {purge_expired_nonces()} expired records.")
