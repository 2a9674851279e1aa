from registry.management.commands._base import RegistryCommand
from registry.services import participant_reinstate


class Command(RegistryCommand):
    permission = "suspend_participant"
    help = "Reinstate a suspended participant."

    def add_arguments(self, parser):
        parser.add_argument("participant_id")

    def handle(self, *args, participant_id, **options):
        actor = self.acting_user(options)
        participant = self.participant(participant_id)
        self.run_service(lambda: participant_reinstate(participant=participant, acting_user=actor))
        self.stdout.write(f"Reinstated {participant}.")
