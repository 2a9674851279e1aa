"""The service's own signing keys. Created by ``authservice`` migration 0001 and moved
here without touching the table (``db_table`` keeps its name; see migration 0001)."""

from datetime import timedelta

from django.db import models
from django.utils import timezone

from signing.conf import signing_settings


class SigningKeyState(models.TextChoices):
    NEXT = "NEXT", "Next (published, not signing yet)"
    ACTIVE = "ACTIVE", "Active (signing)"
    RETIRED = "RETIRED", "Retired (published until its tokens expire)"


def _publication_after_retirement() -> timedelta:
    """How long a retired key stays in the JWKS: until every token it signed has expired."""
    return timedelta(seconds=signing_settings.ACCESS_TOKEN_TTL + signing_settings.LEEWAY)


class SigningKeyQuerySet(models.QuerySet):
    def published(self, now=None) -> "SigningKeyQuerySet":
        """Keys that belong in the JWKS: next, active, and retired ones whose tokens may live."""
        now = now or timezone.now()
        horizon = now - _publication_after_retirement()
        return self.filter(
            models.Q(state__in=[SigningKeyState.NEXT, SigningKeyState.ACTIVE])
            | models.Q(state=SigningKeyState.RETIRED, retired_at__gt=horizon)
        )


class SigningKey(models.Model):
    """One of the service's own signing keys. The private half is encrypted at rest."""

    kid = models.CharField(max_length=64, unique=True)
    alg = models.CharField(max_length=10)
    state = models.CharField(max_length=10, choices=SigningKeyState.choices)
    public_jwk = models.JSONField()
    private_key_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    objects = SigningKeyQuerySet.as_manager()

    class Meta:
        # The table authservice created: the model moved, its rows did not.
        db_table = "authservice_signingkey"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=models.Q(state="ACTIVE"), name="one_active_signing_key"
            ),
            models.UniqueConstraint(
                fields=["state"], condition=models.Q(state="NEXT"), name="one_next_signing_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kid} ({self.alg}, {self.state})"

    @property
    def published_until(self):
        if self.state != SigningKeyState.RETIRED or self.retired_at is None:
            return None
        return self.retired_at + _publication_after_retirement()
