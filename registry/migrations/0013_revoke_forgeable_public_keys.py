"""Revoke registered keys that anyone could sign with (registry.key_material vets keys
on entry since: small-order or non-canonical Ed25519 points, RSA moduli with small or
close prime factors, small RSA exponents). Such a key, registered before, would still
be served by the registry API, so a provider would accept signatures forged from the
public key alone. Each revoked key is named in the migration's output; the token
endpoint already refuses to authenticate with one."""

from django.core.exceptions import ValidationError
from django.db import migrations
from django.db.models import F
from django.utils import timezone
from jwcrypto import jwk
from jwcrypto.common import JWException


def _forgeable(public_jwk: dict) -> bool:
    from registry.key_material import check_key_strength

    try:
        key = jwk.JWK(**{k: v for k, v in public_jwk.items() if k != "x5c"}).get_op_key("verify")
    except (JWException, ValueError, TypeError, KeyError, NotImplementedError):
        return True  # unreadable: it could not verify anything honest either
    try:
        check_key_strength(key)
    except ValidationError:
        return True
    return False


def revoke_forgeable_keys(apps, schema_editor) -> None:
    PublicKey = apps.get_model("registry", "PublicKey")
    Participant = apps.get_model("registry", "Participant")
    ListGeneration = apps.get_model("registry", "ListGeneration")
    now = timezone.now()
    revoked = [key for key in PublicKey.objects.filter(status="ACTIVE").order_by("pk") if _forgeable(key.public_jwk)]
    for key in revoked:
        PublicKey.objects.filter(pk=key.pk).update(status="REVOKED", revoked_at=now)
        Participant.objects.filter(pk=key.participant_id).update(generation=F("generation") + 1)
        print(f"\n  revoked forgeable key kid={key.kid} of participant {key.participant_id}", end="")  # noqa: T201
    if revoked:
        ListGeneration.objects.filter(pk=1).update(value=F("value") + 1)


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0012_participant_makers"),
    ]

    operations = [
        migrations.RunPython(revoke_forgeable_keys, migrations.RunPython.noop),
    ]
