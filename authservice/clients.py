"""Writes to OAuth clients. The registry's participant services call these; so do the
management commands. Secrets are returned once, to the caller, and stored hashed.

Each function leaves the client's cached records stale from its commit on (it bumps the
client's generation; a created or deleted client changes it by appearing or vanishing),
so a caller that changes a client through one of these need not.
Those that end the client's existing tokens set its tokens-not-before in the same
transaction (``authservice.not_before``).
"""

import secrets
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_application_model

from authservice import not_before
from authservice.clientcache import bump_client_generation

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


MAX_SECRET_GRACE_SECONDS = 7 * 24 * 3600
# A rotation this soon after the previous one is most likely a repeated submission or a
# second administrator acting at the same moment: its secret would silently replace the
# one just handed out. Refused unless forced.
SECRET_ROTATION_COOLDOWN_SECONDS = 60


def _locked(client):
    Client = get_application_model()
    return Client.objects.select_for_update().get(pk=client.pk)


def _refuse_overlapping_rotation(client, now: datetime) -> None:
    """Refuse a rotation that would silently undo another one (see ``client_rotate_secret``)."""
    expires = client.previous_secret_expires_at
    if expires is not None and expires > now:
        raise ValidationError(
            f"The previous secret still works until {expires:%Y-%m-%d %H:%M:%S}Z (grace period of the last "
            "rotation); rotating again now would stop it at once. Wait until then, or force the rotation."
        )
    last = client.secret_rotated_at
    if last is not None and (now - last).total_seconds() < SECRET_ROTATION_COOLDOWN_SECONDS:
        raise ValidationError(
            f"The secret was rotated {int((now - last).total_seconds())}s ago (a repeated request, or another "
            "administrator at the same moment?): the secret issued then is the one in force. Force the rotation "
            "to replace it anyway."
        )


@transaction.atomic
def client_rotate_secret(*, client, grace_seconds: int = 0, revoke_tokens: bool = False,
                         force: bool = False) -> str:
    """Replace the client's secret. The old one stops working at once, or after
    ``grace_seconds`` so a participant can roll its deployments over. With
    ``revoke_tokens`` every token issued before the rotation is refused as well (for a
    leaked secret); the old secret then stops at once, or it could mint new ones.

    Rotations of one client are serialised by its row lock, and one that would undo
    another is refused unless ``force``: within ``SECRET_ROTATION_COOLDOWN_SECONDS`` of
    the last rotation (so of two concurrent rotations exactly one secret is issued), or
    while the last rotation's grace period runs (a forced one ends that grace at once:
    only the secret being replaced keeps a grace period)."""
    if not 0 <= grace_seconds <= MAX_SECRET_GRACE_SECONDS:
        raise ValidationError(f"The grace period must be between 0 and {MAX_SECRET_GRACE_SECONDS} seconds.")
    if revoke_tokens and grace_seconds:
        raise ValidationError("Ending the old secret's tokens needs the old secret to stop at once: "
                              "a grace period would let it obtain new ones.")
    locked = _locked(client)
    now = timezone.now()
    if not force:
        _refuse_overlapping_rotation(locked, now)
    secret = generate_client_secret()
    if grace_seconds:
        locked.previous_client_secret = locked.client_secret
        locked.previous_secret_expires_at = now + timedelta(seconds=grace_seconds)
    else:
        locked.previous_client_secret = ""
        locked.previous_secret_expires_at = None
    locked.client_secret = secret
    locked.secret_rotated_at = now
    fields = ["client_secret", "previous_client_secret", "previous_secret_expires_at", "secret_rotated_at",
              "updated"]
    if revoke_tokens:
        locked.tokens_not_before = not_before.cutoff_now(locked.tokens_not_before)
        fields.append("tokens_not_before")
    locked.save(update_fields=fields)
    bump_client_generation(locked)
    return secret


@transaction.atomic
def client_revoke_tokens(*, client) -> datetime:
    """End every token the client holds: those issued before now are refused wherever
    they are presented. The client keeps working. Returns the new tokens-not-before."""
    locked = _locked(client)
    locked.tokens_not_before = not_before.cutoff_now(locked.tokens_not_before)
    locked.save(update_fields=["tokens_not_before", "updated"])
    bump_client_generation(locked)
    return locked.tokens_not_before


def _set_active(client, *, active: bool) -> datetime:
    """Switch the client on or off; either way tokens issued before now stay refused."""
    locked = _locked(client)
    locked.is_active = active
    locked.deactivated_at = None if active else timezone.now()
    locked.tokens_not_before = not_before.cutoff_now(locked.tokens_not_before)
    locked.save(update_fields=["is_active", "deactivated_at", "tokens_not_before", "updated"])
    bump_client_generation(locked)
    return locked.tokens_not_before


@transaction.atomic
def client_deactivate(*, client) -> datetime:
    """Stop the client at once: it cannot authenticate, and every token it holds is
    refused wherever it is presented (introspection, the registry API), also after it
    is reactivated. Deleting the client afterwards makes the stop permanent. Returns
    the new tokens-not-before."""
    return _set_active(client, active=False)


@transaction.atomic
def client_reactivate(*, client) -> datetime:
    """Let the client authenticate again. Tokens issued before now (before its
    deactivation, or by a request that raced it) stay refused. Returns the new
    tokens-not-before."""
    return _set_active(client, active=True)


@transaction.atomic
def client_delete(*, client) -> None:
    """Remove the client for good: it can never authenticate again, and every token it
    holds is refused wherever it is presented."""
    Client = get_application_model()
    Client.objects.filter(pk=client.pk).delete()
