"""Writes to OAuth clients. The registry's participant services call these; so do the
management commands. Secrets are returned once, to the caller, and stored hashed."""

import secrets

from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model

CLIENT_SECRET_BYTES = 32  # 256 bits


def generate_client_secret() -> str:
    return secrets.token_urlsafe(CLIENT_SECRET_BYTES)


@transaction.atomic
def client_create(*, name: str) -> tuple[object, str]:
    """Create a confidential client_credentials client. Returns (client, plaintext secret)."""
    Client = get_application_model()
    secret = generate_client_secret()
    client = Client(
        name=name,
        client_type=Client.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        hash_client_secret=True,
        redirect_uris="",
    )
    client.full_clean(exclude=["client_secret"])
    client.save()
    return client, secret


@transaction.atomic
def client_rotate_secret(*, client) -> str:
    """Replace the client's secret; the old one stops working at once."""
    secret = generate_client_secret()
    Client = get_application_model()
    locked = Client.objects.select_for_update().get(pk=client.pk)
    locked.client_secret = secret
    locked.save(update_fields=["client_secret", "updated"])
    return secret


@transaction.atomic
def client_deactivate(*, client) -> int:
    """Stop the client at once: no authentication, every token it holds revoked.

    Returns the number of tokens revoked.
    """
    Client = get_application_model()
    locked = Client.objects.select_for_update().get(pk=client.pk)
    locked.is_active = False
    locked.deactivated_at = timezone.now()
    locked.save(update_fields=["is_active", "deactivated_at", "updated"])
    deleted, _ = get_access_token_model().objects.filter(application=locked).delete()
    return deleted


@transaction.atomic
def client_reactivate(*, client) -> None:
    Client = get_application_model()
    Client.objects.filter(pk=client.pk).update(is_active=True, deactivated_at=None, updated=timezone.now())
