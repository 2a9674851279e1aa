from registry.management.commands._base import RegistryCommand
from registry.services import mapping_grant


class Command(RegistryCommand):
    permission = "manage_resource_mappings"
    help = ("Allow a client participant to use scopes at a provider participant. The scopes (catalogue "
            "scopes, see define_scope) are added to those it has there, or replace them with --replace.")

    def add_arguments(self, parser):
        parser.add_argument("client_participant_id")
        parser.add_argument("provider_participant_id")
        parser.add_argument("--scopes", required=True, help='space-separated, e.g. "ocen.loan ocen.offer"')
        parser.add_argument("--replace", action="store_true",
                            help="replace the scopes the client has at the provider instead of adding to them")
        parser.add_argument("--confirm-unapproved-provider", action="store_true",
                            help="grant even though the provider is not approved (it takes effect once it is)")

    def handle(self, *args, client_participant_id, provider_participant_id, scopes, replace,
               confirm_unapproved_provider, **options):
        actor = self.acting_user(options)
        client = self.participant(client_participant_id)
        provider = self.participant(provider_participant_id)
        mapping = self.run_service(lambda: mapping_grant(
            client=client, provider=provider, scopes=scopes, acting_user=actor, replace=replace,
            confirm_unapproved_provider=confirm_unapproved_provider))
        self.stdout.write(f"{client} may use {mapping.scopes} at {provider} (audience {mapping.audience}).")
        if replace and mapping.scopes_before and mapping.scopes_before != mapping.scopes:
            self.stdout.write(f"Replaced: before {mapping.scopes_before}; after {mapping.scopes}.")
