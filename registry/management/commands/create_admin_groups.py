"""Create the registry's admin groups with their permissions (idempotent)."""

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

VIEW = ["view_organisation", "view_participant", "view_endpoint", "view_publickey", "view_resourcemapping",
        "view_auditevent"]
GROUPS = {
    "Registry auditors": VIEW,
    "Registry operators": [
        *VIEW, "add_organisation", "change_organisation", "onboard_participant", "manage_participant_keys",
        "manage_resource_mappings", "rotate_participant_secret", "suspend_participant",
    ],
}


class Command(BaseCommand):
    help = "Create the 'Registry operators' and 'Registry auditors' groups. Offboarding stays with superusers."

    def handle(self, *args, **options):
        for name, codenames in GROUPS.items():
            group, _ = Group.objects.get_or_create(name=name)
            permissions = Permission.objects.filter(content_type__app_label="registry", codename__in=codenames)
            group.permissions.set(permissions)
            self.stdout.write(f"{name}: {permissions.count()} permissions")
