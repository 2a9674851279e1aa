from django.core.management.base import BaseCommand

from authservice.replay import purge_expired_nonces
from authservice.revocation import purge_expired_revocations


class Command(BaseCommand):
    help = ("Delete records that outlived their purpose: revocations of tokens that have expired anyway and "
            "used client-assertion jtis. Schedule it (e.g. hourly).")

    def handle(self, *args, **options):
        revocations = purge_expired_revocations()
        nonces = purge_expired_nonces()
        self.stdout.write(f"Deleted {revocations} expired revocations and {nonces} expired assertion records.")
