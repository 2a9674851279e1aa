"""Rotate the service's token signing key in two safe steps.

  rotate_signing_key             pre-publish the next key (in the JWKS, not signing)
  rotate_signing_key --activate  make it the signer; the old key retires but stays
                                 published until every token it signed has expired
  rotate_signing_key --status    list keys and their states

Every change is written to the audit log (AUTHSERVICE["SIGNING_KEY_EVENT_RECORDER"]).
"""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from signing.conf import SUPPORTED_SIGNING_ALGS
from signing.keys import signing_key_activate, signing_key_prepublish
from signing.models import SigningKey


class Command(BaseCommand):
    help = "Pre-publish, activate and list the service's signing keys."
    # Replacing a signing key whose private half is lost (authservice.E002) must stay possible.
    requires_system_checks = []

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--activate", action="store_true", help="Make the pre-published key the signer.")
        group.add_argument("--status", action="store_true", help="List keys and their states.")
        parser.add_argument("--force", action="store_true",
                            help="With --activate: do not wait for verifiers' JWKS caches to expire.")
        parser.add_argument("--alg", choices=SUPPORTED_SIGNING_ALGS, help="Algorithm of the new key.")
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args, activate: bool, status: bool, force: bool, alg: str | None, json: bool, **opts):
        if force and not activate:
            raise CommandError("--force only applies to --activate.")
        if status:
            return self._status(as_json=json)
        try:
            if activate:
                key = signing_key_activate(force=force)
                message = f"Activated signing key kid={key.kid}; the previous key is retired."
            else:
                key, created = signing_key_prepublish(alg=alg)
                message = (f"Pre-published signing key kid={key.kid} alg={key.alg}. "
                           "Run with --activate once verifiers have refreshed their JWKS."
                           if created else f"Key kid={key.kid} is already pre-published.")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if json:
            self.stdout.write(_dumps({"kid": key.kid, "alg": key.alg, "state": key.state}))
        else:
            self.stdout.write(message)

    def _status(self, *, as_json: bool) -> None:
        published = set(SigningKey.objects.published().values_list("pk", flat=True))
        rows = [
            {
                "kid": key.kid,
                "alg": key.alg,
                "state": key.state,
                "published": key.pk in published,
                "created_at": key.created_at.isoformat(),
                "activated_at": key.activated_at.isoformat() if key.activated_at else None,
                "retired_at": key.retired_at.isoformat() if key.retired_at else None,
                "published_until": key.published_until.isoformat() if key.published_until else None,
            }
            for key in SigningKey.objects.order_by("created_at")
        ]
        if as_json:
            self.stdout.write(_dumps(rows))
            return
        if not rows:
            self.stdout.write("No signing keys. Run `python manage.py bootstrap`.")
        for row in rows:
            until = f" until {row['published_until']}" if row["published_until"] else ""
            shown = "published" if row["published"] else "unpublished"
            self.stdout.write(f"{row['kid']}  {row['alg']}  {row['state']:<8} {shown}{until}")


def _dumps(value) -> str:
    return json.dumps(value, indent=None)
