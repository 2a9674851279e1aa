"""SigningKey is the signing app's now (signing 0001 adds it to that app's state, over the
same table): remove it from authservice's state only. The table and its rows stay."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("authservice", "0010_client_generation_trigger"),
        ("signing", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="SigningKey")],
            database_operations=[],
        ),
    ]
