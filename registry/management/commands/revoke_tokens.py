from authservice.not_before import as_text
from registry.management.commands._base import RegistryCommand
from registry.services import participant_revoke_tokens


class Command(RegistryCommand):
    permission = "rotate_participant_secret"
    help = ("End every token a participant's client holds: tokens issued before now are refused. "
            "The client keeps working.")

    def add_arguments(self, parser):
        parser.add_argument("participant_id")
        parser.add_argument("--reason", required=True)

    def handle(self, *args, participant_id, reason, **options):
        actor = self.acting_user(options)
        participant = self.participant(participant_id)
        cutoff = self.run_service(lambda: participant_revoke_tokens(participant=participant, reason=reason,
                                                                    acting_user=actor))
        self.stdout.write(f"Revoked every token of {participant} (participant {participant.participant_id}): "
                          f"tokens issued before {as_text(cutoff)} are refused.")
