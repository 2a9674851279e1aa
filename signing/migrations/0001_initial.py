"""The SigningKey model moves here from authservice, its table staying where it is.

State only: the table ``authservice_signingkey`` was created by authservice's 0001 and
keeps its name (``db_table``), rows, indexes and constraints; authservice's 0011
removes the model from authservice's state after this adds it to this app's. The
model's content type moves with it, so permissions granted on signing keys and the
admin's history of them stay attached."""

import django.utils.timezone
from django.db import migrations, models

OLD, NEW = "authservice", "signing"


def _move_content_type(apps, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label=new, model="signingkey").exists():
        ContentType.objects.filter(app_label=old, model="signingkey").update(app_label=new)


def move_content_type(apps, schema_editor):
    _move_content_type(apps, OLD, NEW)


def move_content_type_back(apps, schema_editor):
    _move_content_type(apps, NEW, OLD)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("authservice", "0010_client_generation_trigger"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SigningKey",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("kid", models.CharField(max_length=64, unique=True)),
                        ("alg", models.CharField(max_length=10)),
                        ("state", models.CharField(choices=[("NEXT", "Next (published, not signing yet)"),
                                                            ("ACTIVE", "Active (signing)"),
                                                            ("RETIRED", "Retired (published until its tokens expire)")],
                                                   max_length=10)),
                        ("public_jwk", models.JSONField()),
                        ("private_key_encrypted", models.TextField(blank=True, editable=False)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("activated_at", models.DateTimeField(blank=True, null=True)),
                        ("retired_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "authservice_signingkey",
                        "ordering": ["-created_at"],
                        "constraints": [
                            models.UniqueConstraint(condition=models.Q(("state", "ACTIVE")), fields=("state",),
                                                    name="one_active_signing_key"),
                            models.UniqueConstraint(condition=models.Q(("state", "NEXT")), fields=("state",),
                                                    name="one_next_signing_key"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
