"""Triggers that tell every serving process of a change to a client or a new lockout
(``authservice.change_listener``). PostgreSQL only: SQLite has no LISTEN/NOTIFY, and the
embedded default reads the state on every request instead."""

from django.db import migrations

CHANNEL = "authservice_changes"  # authservice.change_listener.CHANNEL, frozen here


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    clients = quote(apps.get_model("authservice", "OAuthClient")._meta.db_table)
    counters = quote(apps.get_model("authservice", "AuthFailureCounter")._meta.db_table)
    schema_editor.execute(f"""
        CREATE OR REPLACE FUNCTION authservice_client_changed() RETURNS trigger AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                PERFORM pg_notify('{CHANNEL}', 'c:' || OLD.client_id);
            END IF;
            IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.client_id IS DISTINCT FROM OLD.client_id) THEN
                PERFORM pg_notify('{CHANNEL}', 'c:' || NEW.client_id);
            END IF;
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql""")
    schema_editor.execute(f"""
        CREATE TRIGGER authservice_client_changed AFTER INSERT OR UPDATE OR DELETE ON {clients}
        FOR EACH ROW EXECUTE FUNCTION authservice_client_changed()""")
    schema_editor.execute(f"""
        CREATE OR REPLACE FUNCTION authservice_lockout_started() RETURNS trigger AS $$
        BEGIN
            IF NEW.locked_until IS NOT NULL
               AND (TG_OP = 'INSERT' OR NEW.locked_until IS DISTINCT FROM OLD.locked_until) THEN
                PERFORM pg_notify('{CHANNEL}', 'l:' || NEW.key || ':' || NEW.locked_until);
            END IF;
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql""")
    schema_editor.execute(f"""
        CREATE TRIGGER authservice_lockout_started AFTER INSERT OR UPDATE OF locked_until ON {counters}
        FOR EACH ROW EXECUTE FUNCTION authservice_lockout_started()""")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    clients = quote(apps.get_model("authservice", "OAuthClient")._meta.db_table)
    counters = quote(apps.get_model("authservice", "AuthFailureCounter")._meta.db_table)
    schema_editor.execute(f"DROP TRIGGER IF EXISTS authservice_client_changed ON {clients}")
    schema_editor.execute(f"DROP TRIGGER IF EXISTS authservice_lockout_started ON {counters}")
    schema_editor.execute("DROP FUNCTION IF EXISTS authservice_client_changed()")
    schema_editor.execute("DROP FUNCTION IF EXISTS authservice_lockout_started()")


class Migration(migrations.Migration):
    dependencies = [
        ("authservice", "0008_client_generation_and_unindexed_secret"),
    ]

    operations = [migrations.RunPython(create, drop)]
