"""Re-encrypt the service's stored private keys under the first key-encryption key.

Rotating the key-encryption key: set AUTHSERVICE_KEY_ENCRYPTION_KEY=new,old, run this,
then drop `old`. Moving off a passphrase is the same, plus a signing key rotation (the
command says so): the first key must be random, a passphrase may only follow it.
Idempotent; refuses, changing nothing, if any key cannot be
decrypted with the configured keys.
"""

import json

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError

from signing.conf import signing_settings
from signing.kek import is_random_key
from signing.keys import signing_keys_reencrypt


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
        except ImproperlyConfigured as exc:  # the first key-encryption key is a passphrase
            raise CommandError(str(exc)) from exc
        if any(not is_random_key(key) for key in signing_settings.KEY_ENCRYPTION_KEYS[1:]):
            # Re-encrypting moves the keys, not the copies: a backup or database copy taken
            # before still holds them under the passphrase.
            self.stderr.write("A passphrase is still configured after the first key-encryption key. The keys it "
                              "encrypted are in every backup taken before: replace the signing key "
                              "(`rotate_signing_key`, then `rotate_signing_key --activate` after the token "
                              "lifetime), then drop the passphrase from AUTHSERVICE_KEY_ENCRYPTION_KEY.")
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
