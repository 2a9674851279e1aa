"""Organisation search (``search=`` on the registry API, the admin's search) is a
case-insensitive substring match: ``UPPER(legal_name) LIKE UPPER('%x%')``. On
PostgreSQL a trigram GIN index on ``UPPER(legal_name)`` serves it instead of a
sequential scan. SQLite (the embedded default) has no such index and needs none at
its scale; nothing happens there."""

from django.db import migrations

INDEX = "registry_organisation_legal_name_upper_trgm"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON registry_organisation USING gin (UPPER(legal_name) gin_trgm_ops)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("registry", "0003_auditevent_key_id")]

    operations = [migrations.RunPython(create, drop)]
