"""Changes to what a client is granted bump the client's generation, also raw SQL ones.

A client's cached record (``authservice.clientcache``) holds its participant's status,
role and claims, its resource mappings (and whether each provider is approved) and
its registered keys. ``registry.services`` bumps the client's generation with each
such change; these triggers do it for any change, whoever makes it, so an operator's
``UPDATE`` in psql takes effect at the token endpoint at once. On PostgreSQL the
bumped client row also notifies every serving process (authservice 0009).

- a participant's status, role, ids, organisation or client: its client, and the
  clients mapped to it as a provider;
- a mapping added, changed or removed: the client participant's client;
- a key added, changed or removed: its participant's client;
- an organisation's ``org_id``: its participants' clients.

PostgreSQL locks the client rows in primary-key order first, as
``authservice.clientcache.bump_client_generations`` does, so writers cannot deadlock.
"""

from django.db import migrations

POSTGRES_FUNCTIONS = ("registry_bump_clients(bigint[])", "registry_participant_changed()",
                      "registry_mapping_changed()", "registry_key_changed()", "registry_organisation_changed()")
SQLITE_TRIGGERS = ("registry_participant_inserted", "registry_participant_updated", "registry_participant_deleted",
                   "registry_mapping_inserted", "registry_mapping_updated", "registry_mapping_deleted",
                   "registry_key_inserted", "registry_key_updated", "registry_key_deleted",
                   "registry_organisation_updated")
PARTICIPANT_COLUMNS = "status, role, participant_id, organisation_id, client_id"


def _tables(apps, schema_editor) -> dict[str, str]:
    def table(app: str, model: str) -> str:
        return schema_editor.quote_name(apps.get_model(app, model)._meta.db_table)

    return {"clients": table("authservice", "OAuthClient"), "participants": table("registry", "Participant"),
            "mappings": table("registry", "ResourceMapping"), "keys": table("registry", "PublicKey"),
            "organisations": table("registry", "Organisation")}


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    t = _tables(apps, schema_editor)
    if vendor == "postgresql":
        for statement in _postgres(t):
            schema_editor.execute(statement)
    elif vendor == "sqlite":
        for statement in _sqlite(t):
            schema_editor.execute(statement)


def _postgres(t: dict[str, str]) -> list[str]:
    return [
        f"""
        CREATE OR REPLACE FUNCTION registry_bump_clients(ids bigint[]) RETURNS void AS $$
        BEGIN
            PERFORM 1 FROM {t['clients']} WHERE id = ANY(ids) ORDER BY id FOR UPDATE;
            UPDATE {t['clients']} SET generation = generation + 1 WHERE id = ANY(ids);
        END
        $$ LANGUAGE plpgsql""",
        f"""
        CREATE OR REPLACE FUNCTION registry_participant_changed() RETURNS trigger AS $$
        DECLARE
            ids bigint[] := ARRAY[]::bigint[];
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                ids := ids || OLD.client_id || ARRAY(
                    SELECT p.client_id FROM {t['mappings']} m JOIN {t['participants']} p ON p.id = m.client_id
                    WHERE m.provider_id = OLD.id AND p.client_id IS NOT NULL);
            END IF;
            IF TG_OP <> 'DELETE' THEN
                ids := ids || NEW.client_id;
            END IF;
            PERFORM registry_bump_clients(ids);
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql""",
        f"""
        CREATE TRIGGER registry_participant_changed
        AFTER INSERT OR DELETE OR UPDATE OF {PARTICIPANT_COLUMNS} ON {t['participants']}
        FOR EACH ROW EXECUTE FUNCTION registry_participant_changed()""",
        f"""
        CREATE OR REPLACE FUNCTION registry_mapping_changed() RETURNS trigger AS $$
        DECLARE
            owners bigint[] := ARRAY[]::bigint[];
        BEGIN
            IF TG_OP <> 'INSERT' THEN owners := owners || OLD.client_id; END IF;
            IF TG_OP <> 'DELETE' THEN owners := owners || NEW.client_id; END IF;
            PERFORM registry_bump_clients(ARRAY(
                SELECT client_id FROM {t['participants']} WHERE id = ANY(owners) AND client_id IS NOT NULL));
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql""",
        f"""
        CREATE TRIGGER registry_mapping_changed AFTER INSERT OR UPDATE OR DELETE ON {t['mappings']}
        FOR EACH ROW EXECUTE FUNCTION registry_mapping_changed()""",
        f"""
        CREATE OR REPLACE FUNCTION registry_key_changed() RETURNS trigger AS $$
        DECLARE
            owners bigint[] := ARRAY[]::bigint[];
        BEGIN
            IF TG_OP <> 'INSERT' THEN owners := owners || OLD.participant_id; END IF;
            IF TG_OP <> 'DELETE' THEN owners := owners || NEW.participant_id; END IF;
            PERFORM registry_bump_clients(ARRAY(
                SELECT client_id FROM {t['participants']} WHERE id = ANY(owners) AND client_id IS NOT NULL));
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql""",
        f"""
        CREATE TRIGGER registry_key_changed AFTER INSERT OR UPDATE OR DELETE ON {t['keys']}
        FOR EACH ROW EXECUTE FUNCTION registry_key_changed()""",
        f"""
        CREATE OR REPLACE FUNCTION registry_organisation_changed() RETURNS trigger AS $$
        BEGIN
            PERFORM registry_bump_clients(ARRAY(
                SELECT client_id FROM {t['participants']} WHERE organisation_id = NEW.id AND client_id IS NOT NULL));
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql""",
        f"""
        CREATE TRIGGER registry_organisation_changed AFTER UPDATE OF org_id ON {t['organisations']}
        FOR EACH ROW EXECUTE FUNCTION registry_organisation_changed()""",
    ]


def _sqlite(t: dict[str, str]) -> list[str]:
    bump = f"UPDATE {t['clients']} SET generation = generation + 1 WHERE id IN"
    mapped_to = (f"SELECT p.client_id FROM {t['mappings']} m JOIN {t['participants']} p ON p.id = m.client_id "
                 "WHERE m.provider_id = {row}.id")
    owner = f"SELECT client_id FROM {t['participants']} WHERE id = {{row}}.{{column}}"
    statements = [
        f"""CREATE TRIGGER registry_participant_inserted AFTER INSERT ON {t['participants']}
            BEGIN {bump} (NEW.client_id); END""",
        f"""CREATE TRIGGER registry_participant_updated AFTER UPDATE OF {PARTICIPANT_COLUMNS} ON {t['participants']}
            BEGIN {bump} (OLD.client_id, NEW.client_id) OR id IN ({mapped_to.format(row='OLD')}); END""",
        f"""CREATE TRIGGER registry_participant_deleted AFTER DELETE ON {t['participants']}
            BEGIN {bump} (OLD.client_id) OR id IN ({mapped_to.format(row='OLD')}); END""",
        f"""CREATE TRIGGER registry_organisation_updated AFTER UPDATE OF org_id ON {t['organisations']}
            BEGIN {bump} (SELECT client_id FROM {t['participants']} WHERE organisation_id = NEW.id); END""",
    ]
    for name, table, column in (("mapping", t["mappings"], "client_id"), ("key", t["keys"], "participant_id")):
        statements += [
            f"""CREATE TRIGGER registry_{name}_inserted AFTER INSERT ON {table}
                BEGIN {bump} ({owner.format(row='NEW', column=column)}); END""",
            f"""CREATE TRIGGER registry_{name}_updated AFTER UPDATE ON {table}
                BEGIN {bump} ({owner.format(row='OLD', column=column)})
                          OR id IN ({owner.format(row='NEW', column=column)}); END""",
            f"""CREATE TRIGGER registry_{name}_deleted AFTER DELETE ON {table}
                BEGIN {bump} ({owner.format(row='OLD', column=column)}); END""",
        ]
    return statements


def drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    t = _tables(apps, schema_editor)
    if vendor == "postgresql":
        for trigger, table in (("registry_participant_changed", t["participants"]),
                               ("registry_mapping_changed", t["mappings"]), ("registry_key_changed", t["keys"]),
                               ("registry_organisation_changed", t["organisations"])):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        for function in POSTGRES_FUNCTIONS:
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {function}")
    elif vendor == "sqlite":
        for trigger in SQLITE_TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {trigger}")


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0009_scoped_generations_and_audit_indexes"),
        ("authservice", "0010_client_generation_trigger"),
    ]

    operations = [migrations.RunPython(create, drop)]
