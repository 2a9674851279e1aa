from django.core.management.base import BaseCommand

from authservice.lockouts import purge_expired_failures
from authservice.replay import purge_expired_nonces
from authservice.revocation import purge_expired_revocations


class Command(BaseCommand):
    help = ("Delete records that outlived their purpose: revocations of tokens that have expired anyway, "
            "used client-assertion jtis, and failed-authentication counters whose window and lockout have "
            "ended. Schedule it (e.g. hourly).")

    def handle(self, *args, **options):
        revocations = purge_expired_revocations()
        nonces = purge_expired_nonces()
        failures = purge_expired_failures()
        self.stdout.write(f"Deleted {revocations} expired revocations, {nonces} expired assertion records "
                          f"and {failures} expired authentication-failure counters.")
