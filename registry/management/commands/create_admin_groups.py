"""Create the registry's admin groups with their permissions (idempotent)."""

from django.core.management.base import BaseCommand

from registry.admin.groups import admin_groups_ensure


class Command(BaseCommand):
    help = "Create the 'Registry operators' and 'Registry auditors' groups. Offboarding stays with superusers."

    def handle(self, *args, **options):
        for name, count in admin_groups_ensure().items():
            self.stdout.write(f"{name}: {count} permissions")
