"""Create a standalone OAuth client (outside the participant registry).

Participants get their clients through onboarding; this is for service accounts
and local experiments. The secret is printed once and cannot be shown again.
"""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from authservice.clients import client_create


class Command(BaseCommand):
    help = "Create a confidential client_credentials client and print its secret once."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, name: str, json: bool, **options):
        name = name.strip()
        if not name:
            raise CommandError("--name must not be empty.")
        try:
            client, secret = client_create(name=name)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if json:
            self.stdout.write(_dumps({"client_id": client.client_id, "client_secret": secret}))
            return
        self.stdout.write(f"client_id:     {client.client_id}")
        self.stdout.write(f"client_secret: {secret}")
        self.stdout.write("The secret is shown once; only its hash is stored.")


def _dumps(value) -> str:
    return json.dumps(value)
