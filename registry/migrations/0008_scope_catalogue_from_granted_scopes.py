"""Fill the scope catalogue: every scope already granted in a resource mapping, and the
scope approval grants at the registry (``AUTHSERVICE["REGISTRY_SCOPE"]``), so existing
mappings keep working once grants must name catalogue scopes."""

from django.db import migrations

from authservice.conf import authservice_settings

REGISTRY_SCOPE_DESCRIPTION = "Read the participant registry"


def catalogue_granted_scopes(apps, schema_editor) -> None:
    Scope = apps.get_model("registry", "Scope")
    ResourceMapping = apps.get_model("registry", "ResourceMapping")
    registry_scope = authservice_settings.REGISTRY_SCOPE
    names = {registry_scope}
    for scopes in ResourceMapping.objects.values_list("scopes", flat=True).iterator():
        names.update(scopes.split())
    existing = set(Scope.objects.values_list("name", flat=True))
    Scope.objects.bulk_create([
        Scope(name=name, description=REGISTRY_SCOPE_DESCRIPTION if name == registry_scope
              else "Granted before the scope catalogue existed.")
        for name in sorted(names - existing)
    ])


class Migration(migrations.Migration):
    dependencies = [("registry", "0007_four_eyes_scope_catalogue_activity")]

    operations = [migrations.RunPython(catalogue_granted_scopes, migrations.RunPython.noop)]
