"""Re-encrypt the service's stored private keys under the first key-encryption key.

Rotating the key-encryption key: set AUTHSERVICE_KEY_ENCRYPTION_KEY=new,old, run this,
then drop `old`. Idempotent; refuses, changing nothing, if any key cannot be
decrypted with the configured keys.
"""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from authservice.signing_keys import signing_keys_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt every stored signing key under the first AUTHSERVICE_KEY_ENCRYPTION_KEY."
    # The check this command exists to fix (authservice.E002) must not stop it.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args, json: bool, **options):
        try:
            result = signing_keys_reencrypt()
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if json:
            self.stdout.write(_dumps({"reencrypted": result.reencrypted, "already_current": result.already_current,
                                      "without_private_key": result.without_private_key}))
            return
        self.stdout.write(f"Re-encrypted {len(result.reencrypted)} key(s); {len(result.already_current)} already "
                          f"under the first key-encryption key; {result.without_private_key} retired key(s) hold "
                          "no private half.")
        for kid in result.reencrypted:
            self.stdout.write(f"  re-encrypted kid={kid}")


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
