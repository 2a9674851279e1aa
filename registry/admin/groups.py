"""The registry's admin groups and the permissions each holds (see the README's table)."""

from django.contrib.auth.models import Group, Permission
from django.db import transaction

VIEW = ["view_organisation", "view_participant", "view_endpoint", "view_publickey", "view_resourcemapping",
        "view_auditevent", "view_scope"]
GROUPS = {
    "Registry auditors": VIEW,
    "Registry operators": [
        *VIEW, "add_organisation", "change_organisation", "onboard_participant", "manage_participant_keys",
        "manage_resource_mappings", "rotate_participant_secret", "suspend_participant", "manage_scopes",
    ],
}


@transaction.atomic
def admin_groups_ensure() -> dict[str, int]:
    """Create or correct the groups (idempotent). Returns each group's permission count.
    Offboarding stays with superusers unless granted explicitly."""
    counts = {}
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = Permission.objects.filter(content_type__app_label="registry", codename__in=codenames)
        group.permissions.set(permissions)
        counts[name] = permissions.count()
    return counts
