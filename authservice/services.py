"""Writes to OAuth clients. The registry's participant services call these; so do the
management commands. Secrets are returned once, to the caller, and stored hashed.

Each function bumps the client generation once (cached client records are stale from
its commit on), so a caller that changes a client through one of these need not.
"""

import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_application_model

from authservice.clientcache import bump_generation

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
    bump_generation()
    return client, secret


MAX_SECRET_GRACE_SECONDS = 7 * 24 * 3600


@transaction.atomic
def client_rotate_secret(*, client, grace_seconds: int = 0) -> str:
    """Replace the client's secret. The old one stops working at once, or after
    ``grace_seconds`` so a participant can roll its deployments over."""
    if not 0 <= grace_seconds <= MAX_SECRET_GRACE_SECONDS:
        raise ValidationError(f"The grace period must be between 0 and {MAX_SECRET_GRACE_SECONDS} seconds.")
    secret = generate_client_secret()
    Client = get_application_model()
    locked = Client.objects.select_for_update().get(pk=client.pk)
    if grace_seconds:
        locked.previous_client_secret = locked.client_secret
        locked.previous_secret_expires_at = timezone.now() + timedelta(seconds=grace_seconds)
    else:
        locked.previous_client_secret = ""
        locked.previous_secret_expires_at = None
    locked.client_secret = secret
    locked.save(update_fields=["client_secret", "previous_client_secret", "previous_secret_expires_at",
                               "updated"])
    bump_generation()
    return secret


@transaction.atomic
def client_deactivate(*, client) -> None:
    """Stop the client at once: it cannot authenticate, and every token it holds is
    refused wherever it is presented (introspection, the registry API) until it is
    reactivated. Deleting the client afterwards makes that permanent."""
    Client = get_application_model()
    locked = Client.objects.select_for_update().get(pk=client.pk)
    locked.is_active = False
    locked.deactivated_at = timezone.now()
    locked.save(update_fields=["is_active", "deactivated_at", "updated"])
    bump_generation()


@transaction.atomic
def client_reactivate(*, client) -> None:
    Client = get_application_model()
    Client.objects.filter(pk=client.pk).update(is_active=True, deactivated_at=None, updated=timezone.now())
    bump_generation()


@transaction.atomic
def client_delete(*, client) -> None:
    """Remove the client for good: it can never authenticate again, and every token it
    holds is refused wherever it is presented."""
    Client = get_application_model()
    Client.objects.filter(pk=client.pk).delete()
    bump_generation()
