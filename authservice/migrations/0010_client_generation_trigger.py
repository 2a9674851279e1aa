"""Every change to a client row bumps its generation, also one made by raw SQL.

The token endpoint's per-process cache (``authservice.clientcache``) compares a cached
record's generation with the row's. ``registry.services`` bumps it with each change,
but an ``UPDATE`` made by another tool (psql, a data fix) did not, and a client
deactivated that way kept getting tokens from a worker that had it cached. This
trigger bumps the generation of any update that changes the row and does not bump it
itself. (The registry's own triggers bump it for changes to the participant, its
mappings and its keys: registry 0010.)
"""

from django.db import migrations


def create(apps, schema_editor):
    clients = schema_editor.quote_name(apps.get_model("authservice", "OAuthClient")._meta.db_table)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("""
            CREATE OR REPLACE FUNCTION authservice_client_generation() RETURNS trigger AS $$
            BEGIN
                IF NEW.generation = OLD.generation AND NEW IS DISTINCT FROM OLD THEN
                    NEW.generation := OLD.generation + 1;
                END IF;
                RETURN NEW;
            END
            $$ LANGUAGE plpgsql""")
        schema_editor.execute(f"""
            CREATE TRIGGER authservice_client_generation BEFORE UPDATE ON {clients}
            FOR EACH ROW EXECUTE FUNCTION authservice_client_generation()""")
    elif schema_editor.connection.vendor == "sqlite":
        # SQLite cannot change NEW: a second update, which (recursive triggers being off)
        # does not fire this trigger again.
        schema_editor.execute(f"""
            CREATE TRIGGER authservice_client_generation AFTER UPDATE ON {clients}
            FOR EACH ROW WHEN NEW.generation = OLD.generation
            BEGIN
                UPDATE {clients} SET generation = generation + 1 WHERE id = NEW.id;
            END""")


def drop(apps, schema_editor):
    clients = schema_editor.quote_name(apps.get_model("authservice", "OAuthClient")._meta.db_table)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS authservice_client_generation ON {clients}")
        schema_editor.execute("DROP FUNCTION IF EXISTS authservice_client_generation()")
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS authservice_client_generation")


class Migration(migrations.Migration):
    dependencies = [
        ("authservice", "0009_change_feed_triggers"),
    ]

    operations = [migrations.RunPython(create, drop)]
