"""Four-eyes over content: ``Participant.makers``, who recorded or changed a pending
application (its endpoints, keys or organisation); none of them may approve it. Filled
with the recording operator of every application still pending.
"""

from django.conf import settings
from django.db import migrations, models


def pending_makers(apps, schema_editor) -> None:
    Participant = apps.get_model("registry", "Participant")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    username_field = getattr(User, "USERNAME_FIELD", "username")
    for participant in Participant.objects.filter(status__in=["APPLIED", "UNDER_REVIEW"],
                                                  recorded_by__isnull=False):
        username = getattr(User.objects.get(pk=participant.recorded_by_id), username_field)
        participant.makers = [{"id": participant.recorded_by_id, "username": username}]
        participant.save(update_fields=["makers"])


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0011_audit_actor_snapshot'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='participant',
            name='makers',
            field=models.JSONField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(pending_makers, migrations.RunPython.noop),
    ]
