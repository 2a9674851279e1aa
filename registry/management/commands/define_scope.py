from registry.management.commands._base import RegistryCommand
from registry.models import Role
from registry.services import scope_define


class Command(RegistryCommand):
    permission = "manage_scopes"
    help = ("Define a scope of the catalogue, or update its description (idempotent). Grants may name "
            "only catalogue scopes.")

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--description", help="what the scope allows (unchanged when omitted)")
        parser.add_argument("--provider-role", action="append", choices=Role.values, dest="provider_roles",
                            help="a role of the providers that offer the scope (repeat for several; "
                                 "unchanged when omitted)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, name, description, provider_roles, json, **options):
        actor = self.acting_user(options)
        scope, outcome = self.run_service(lambda: scope_define(
            name=name, description=description, provider_roles=provider_roles, acting_user=actor))
        if json:
            self.emit_json({"name": scope.name, "description": scope.description,
                            "provider_roles": scope.provider_roles, "outcome": outcome})
            return
        self.stdout.write(f"{outcome.capitalize()} scope {scope.name}"
                          f"{': ' + scope.description if scope.description else ''}.")
