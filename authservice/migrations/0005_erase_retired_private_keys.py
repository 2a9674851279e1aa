"""Retired keys never sign again: erase the private halves that earlier versions kept
until the next activation. (Dead PostgreSQL tuples and backups keep old values until
VACUUM and backup expiry; see the README.)"""

from django.db import migrations


def erase_retired_private_keys(apps, schema_editor):
    SigningKey = apps.get_model("authservice", "SigningKey")
    SigningKey.objects.filter(state="RETIRED").exclude(private_key_encrypted="").update(private_key_encrypted="")


class Migration(migrations.Migration):

    dependencies = [
        ('authservice', '0004_client_tokens_not_before'),
    ]

    operations = [
        migrations.RunPython(erase_retired_private_keys, migrations.RunPython.noop),
    ]
