from registry.management.commands._base import RegistryCommand
from registry.services import participant_offboard


class Command(RegistryCommand):
    permission = "offboard_participant"
    help = "Offboard a participant: revoke its client and tokens, keys, endpoints and mappings."

    def add_arguments(self, parser):
        parser.add_argument("participant_id")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, participant_id, reason, json, **options):
        actor = self.acting_user(options)
        participant = self.participant(participant_id)
        removed = self.run_service(lambda: participant_offboard(participant=participant, reason=reason,
                                                                acting_user=actor, four_eyes=False))
        if json:
            self.emit_json({"participant_id": participant_id, "removed": removed})
            return
        self.stdout.write(f"Offboarded {participant}: client {removed['client_id']} and every token it held, "
                          f"{len(removed['keys'])} key(s), "
                          f"{len(removed['endpoints'])} endpoint(s), {len(removed['mappings'])} mapping(s) removed.")
