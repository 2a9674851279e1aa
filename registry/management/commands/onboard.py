from pathlib import Path

from django.core.management.base import CommandError

from registry.management.commands._base import RegistryCommand
from registry.models import Role
from registry.services import participant_onboard


class Command(RegistryCommand):
    permission = "onboard_participant"
    help = "Create (or reuse) an organisation and onboard and approve it in one role."

    def add_arguments(self, parser):
        parser.add_argument("--org-name", required=True)
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--base-url", required=True)
        parser.add_argument("--public-key", required=True, help="file with a PEM certificate, PEM key or JWK")
        parser.add_argument("--org-id", help="org_id of an existing organisation (instead of matching by name)")
        parser.add_argument("--json", action="store_true", help="print only the credentials as JSON")

    def handle(self, *args, org_name, role, base_url, public_key, org_id, json, **options):
        actor = self.acting_user(options)
        try:
            material = Path(public_key).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read the public key file {public_key}: {exc}") from exc
        credentials = self.run_service(lambda: participant_onboard(
            org_name=org_name, role=role, base_url=base_url, public_key=material, org_id=org_id, acting_user=actor))
        participant = credentials.participant
        key = participant.keys.order_by("pk").first()
        payload = {"participant_id": str(participant.participant_id), "client_id": credentials.client_id,
                   "client_secret": credentials.client_secret, "org_id": str(participant.organisation.org_id),
                   # the kid the participant signs with (its request signatures, private_key_jwt)
                   "kid": key.kid if key else None}
        if json:
            self.emit_json(payload)
            return
        for key, value in payload.items():
            self.stdout.write(f"{key + ':':<16} {value}")
        self.stdout.write("The client secret is shown once; only its hash is stored.")
