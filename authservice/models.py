"""The OAuth client model (django-oauth-toolkit's swappable Application), used values,
revoked tokens and authentication failure counters. The service's own signing keys are
the signing app's (``signing.models``), re-exported here under their old import path."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AbstractApplication, ClientSecretField

from signing.models import SigningKey, SigningKeyQuerySet, SigningKeyState  # noqa: F401  (old import path)


class OAuthClient(AbstractApplication):
    """A confidential client_credentials client; participants own one each.

    Deactivating a client takes effect at once: it can no longer authenticate, and
    every token it holds introspects as inactive. Tokens issued before
    ``tokens_not_before`` stay refused after it is reactivated (see
    ``authservice.not_before``).
    """

    is_active = models.BooleanField(default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    # A whole second: every token of this client whose iat is earlier is refused.
    tokens_not_before = models.DateTimeField(null=True, blank=True, editable=False)
    # After a rotation with a grace period, the old secret's hash and when it stops working.
    previous_client_secret = models.CharField(max_length=255, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the secret was last rotated: a second rotation soon after is refused unless forced.
    secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Changes with every change to the client or to what it may be granted; workers'
    # cached records of this client are good while it stays the same (authservice.clientcache).
    generation = models.PositiveBigIntegerField(default=0, editable=False)
    # As django-oauth-toolkit declares it, less its index: a hashed secret is never
    # looked up, only compared with after the client is found by client_id.
    client_secret = ClientSecretField(max_length=255, blank=True, default=generate_client_secret,
                                      help_text=_("Client secret for authentication"),
                                      verbose_name=_("client secret"))

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        verbose_name = "OAuth client"

    def is_usable(self, request) -> bool:
        return self.is_active


class UsedNonce(models.Model):
    """A value that may be used once until it expires (e.g. a client assertion's jti)."""

    key = models.UUIDField(unique=True)  # the first 16 bytes of SHA-256(namespace, value)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"used value {self.key} (until {self.expires_at:%Y-%m-%d %H:%M:%S}Z)"


class RevokedToken(models.Model):
    """An access token revoked before it expired (RFC 7009). Access tokens themselves
    are self-contained JWTs and are not stored: issuing one writes nothing; revoking
    one writes this row, which is dropped once the token would have expired anyway."""

    # The service issues uuid4 jtis: a 16-byte key keeps the index small at millions of rows.
    jti = models.UUIDField(primary_key=True)
    client_id = models.CharField(max_length=100)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"revoked token of {self.client_id}"


class AuthFailureCounter(models.Model):
    """A lockout of failed client authentication under one key (an address, or a
    client_id at an address) and, unless Redis counts them, the failures in the current
    window (``authservice.lockouts``). Only failures write here. Times are epoch
    seconds, so the check every request makes is a plain comparison on every database."""

    # The first 8 bytes of SHA-256 over (kind, client_id, address): fixed-size whatever
    # the client sends, and a second preimage costs 2^64 hashes.
    key = models.BigIntegerField(primary_key=True)
    failures = models.PositiveIntegerField(default=0)
    window_ends_at = models.FloatField(db_index=True)
    locked_until = models.FloatField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.failures} authentication failures under key {self.key}"
