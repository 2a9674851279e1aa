from registry.management.commands._base import RegistryCommand
from registry.services import participant_rotate_secret


class Command(RegistryCommand):
    permission = "rotate_participant_secret"
    help = "Issue a new client secret (shown once); the old one stops working at once or after --grace."

    def add_arguments(self, parser):
        parser.add_argument("participant_id")
        parser.add_argument("--grace", type=int, default=0, help="seconds the old secret keeps working")
        parser.add_argument("--revoke-tokens", action="store_true",
                            help="also end every token issued before now (the old secret leaked)")
        parser.add_argument("--force", action="store_true",
                            help="rotate even within a minute of the last rotation or during its grace period "
                                 "(which then ends at once)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, participant_id, grace, revoke_tokens, force, json, **options):
        actor = self.acting_user(options)
        participant = self.participant(participant_id)
        credentials = self.run_service(lambda: participant_rotate_secret(
            participant=participant, grace_seconds=grace, revoke_tokens=revoke_tokens, force=force,
            acting_user=actor))
        if json:
            self.emit_json({"participant_id": participant_id, "client_id": credentials.client_id,
                            "client_secret": credentials.client_secret})
            return
        self.stdout.write(f"client_id:     {credentials.client_id}")
        self.stdout.write(f"client_secret: {credentials.client_secret}")
        self.stdout.write("The secret is shown once; only its hash is stored.")
        if revoke_tokens:
            self.stdout.write("Every token issued before the rotation is refused.")
