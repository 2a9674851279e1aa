from registry.management.commands._base import RegistryCommand
from registry.services import participant_suspend


class Command(RegistryCommand):
    permission = "suspend_participant"
    help = "Suspend a participant: no new tokens, and its live tokens introspect inactive."

    def add_arguments(self, parser):
        parser.add_argument("participant_id")
        parser.add_argument("--reason", required=True)

    def handle(self, *args, participant_id, reason, **options):
        actor = self.acting_user(options)
        participant = self.participant(participant_id)
        self.run_service(lambda: participant_suspend(participant=participant, reason=reason, acting_user=actor))
        self.stdout.write(f"Suspended {participant}.")
