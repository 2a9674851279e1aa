from registry.management.commands._base import RegistryCommand
from registry.services import mapping_grant


class Command(RegistryCommand):
    help = "Allow a client participant to use scopes at a provider participant."

    def add_arguments(self, parser):
        parser.add_argument("client_participant_id")
        parser.add_argument("provider_participant_id")
        parser.add_argument("--scopes", required=True, help='space-separated, e.g. "ocen.loan ocen.offer"')

    def handle(self, *args, client_participant_id, provider_participant_id, scopes, **options):
        client = self.participant(client_participant_id)
        provider = self.participant(provider_participant_id)
        mapping = self.run_service(lambda: mapping_grant(client=client, provider=provider, scopes=scopes,
                                                         acting_user=None))
        self.stdout.write(f"{client} may use {mapping.scopes} at {provider} (audience {mapping.audience}).")
