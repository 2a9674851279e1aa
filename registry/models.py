"""The Participant Registry: organisations, participants (one organisation in one
role), their endpoints and public keys, resource mappings, and the audit log.

Models hold data and invariants the database can enforce; every change goes
through ``registry.services``.
"""

import re
import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from authservice.conf import authservice_settings


class Role(models.TextChoices):
    LENDER = "LENDER", "Lender"
    LOAN_AGENT = "LOAN_AGENT", "Loan agent"
    DISBURSEMENT_PARTNER = "DISBURSEMENT_PARTNER", "Disbursement partner"
    COLLECTIONS_PARTNER = "COLLECTIONS_PARTNER", "Collections partner"
    DERIVED_DATA_PARTNER = "DERIVED_DATA_PARTNER", "Derived data partner"
    KYC_PARTNER = "KYC_PARTNER", "KYC partner"
    ADMIN = "ADMIN", "Admin"
    REGULATOR = "REGULATOR", "Regulator"


class Status(models.TextChoices):
    APPLIED = "APPLIED", "Applied"
    UNDER_REVIEW = "UNDER_REVIEW", "Under review"
    APPROVED = "APPROVED", "Approved"
    SUSPENDED = "SUSPENDED", "Suspended"
    REJECTED = "REJECTED", "Rejected"
    OFFBOARDED = "OFFBOARDED", "Offboarded"


# The legal lifecycle transitions; anything else is refused by the services.
TRANSITIONS: dict[str, set[str]] = {
    Status.APPLIED: {Status.UNDER_REVIEW, Status.APPROVED, Status.REJECTED, Status.OFFBOARDED},
    Status.UNDER_REVIEW: {Status.APPROVED, Status.REJECTED, Status.OFFBOARDED},
    Status.APPROVED: {Status.SUSPENDED, Status.OFFBOARDED},
    Status.SUSPENDED: {Status.APPROVED, Status.OFFBOARDED},
    Status.REJECTED: set(),
    Status.OFFBOARDED: set(),
}
# Statuses in which an organisation "holds" a role: at most one participant each.
HOLDING_STATUSES = [Status.APPLIED, Status.UNDER_REVIEW, Status.APPROVED, Status.SUSPENDED]


class Organisation(models.Model):
    org_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    legal_name = models.CharField(max_length=200, unique=True)
    website = models.URLField(blank=True)
    contact_email = models.EmailField(blank=True)
    contact_phone = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["legal_name"]

    def __str__(self) -> str:
        return self.legal_name


class Participant(models.Model):
    participant_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="participants")
    role = models.CharField(max_length=32, choices=Role.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.APPLIED, db_index=True)
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    client = models.OneToOneField(settings.OAUTH2_PROVIDER_APPLICATION_MODEL, null=True, blank=True,
                                  on_delete=models.SET_NULL, related_name="participant")
    # Four-eyes (registry.four_eyes): who recorded the application and who started its
    # review may not approve it; an offboarding requested by one operator waits for another.
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    offboarding_requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                                 on_delete=models.SET_NULL, related_name="+")
    offboarding_requested_at = models.DateTimeField(null=True, blank=True)
    offboarding_reason = models.TextField(blank=True)
    # Four-eyes over content: everyone who recorded or changed the application while it
    # was pending (its endpoints, keys or organisation); none of them may approve it.
    # [{"id": user pk, "username": as it was}], in the order they acted (no query to list
    # them); None for none. Nullable without a default, so adding it to a table SQLite
    # triggers watch needs no table rebuild.
    makers = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    # Changes with every change to what the registry API shows of this participant;
    # cached answers about it are good while it stays the same (registry.invalidation).
    generation = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["organisation__legal_name", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "role"],
                condition=models.Q(status__in=HOLDING_STATUSES),
                name="one_live_participant_per_org_role",
                violation_error_message="This organisation already holds that role.",
            )
        ]
        permissions = [
            ("onboard_participant", "Can onboard, approve and reject participants"),
            ("manage_participant_keys", "Can add and revoke participant keys and endpoints"),
            ("manage_resource_mappings", "Can grant and remove resource mappings"),
            ("rotate_participant_secret", "Can rotate a participant's client secret"),
            ("suspend_participant", "Can suspend and reinstate participants"),
            ("offboard_participant", "Can offboard participants"),
        ]

    def __str__(self) -> str:
        return f"{self.organisation.legal_name} ({self.get_role_display()})"

    @property
    def audience(self) -> str:
        return participant_audience(self.participant_id)

    @property
    def is_active(self) -> bool:
        return self.status == Status.APPROVED

    @property
    def offboarding_requested(self) -> bool:
        return self.offboarding_requested_at is not None


def participant_audience(participant_id) -> str:
    return f"urn:ocen:participant:{participant_id}"


class Endpoint(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="endpoints")
    url = models.URLField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["participant", "url"], name="unique_participant_endpoint")]

    def __str__(self) -> str:
        return self.url


class KeyStatus(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    REVOKED = "REVOKED", "Revoked"


class KeyFormat(models.TextChoices):
    CERTIFICATE = "CERTIFICATE", "X.509 certificate (PEM)"
    PUBLIC_KEY = "PUBLIC_KEY", "Public key (PEM)"
    JWK = "JWK", "JWK"


class PublicKey(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="keys")
    kid = models.CharField(max_length=128)
    thumbprint = models.CharField(max_length=64, help_text="RFC 7638 JWK thumbprint (SHA-256)")
    alg = models.CharField(max_length=10)
    kty = models.CharField(max_length=5)
    source_format = models.CharField(max_length=12, choices=KeyFormat.choices)
    public_jwk = models.JSONField()
    certificate_pem = models.TextField(blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=KeyStatus.choices, default=KeyStatus.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["thumbprint"], condition=models.Q(status="ACTIVE"),
                                    name="unique_active_key_thumbprint",
                                    violation_error_message="This key is already registered."),
            models.UniqueConstraint(fields=["participant", "kid"], condition=models.Q(status="ACTIVE"),
                                    name="unique_active_participant_kid",
                                    violation_error_message="This participant already has a key with that kid."),
        ]

    def __str__(self) -> str:
        return f"{self.kid} ({self.alg}, {self.status})"


class ResourceMapping(models.Model):
    """The client participant may use ``scopes`` at the provider (or, with no
    provider, at the registry itself). The token endpoint grants only from these."""

    client = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="mappings_as_client")
    provider = models.ForeignKey(Participant, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="mappings_as_provider")
    scopes = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["client", "provider"], name="unique_mapping_to_provider"),
            models.UniqueConstraint(fields=["client"], condition=models.Q(provider__isnull=True),
                                    name="unique_mapping_to_registry"),
        ]

    def __str__(self) -> str:
        target = self.provider or "registry"
        return f"{self.client} → {target}: {self.scopes}"

    @property
    def audience(self) -> str:
        if self.provider_id is None:
            return authservice_settings.REGISTRY_AUDIENCE
        return participant_audience(self.provider.participant_id)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


# RFC 6749 §3.3 scope-token: printable ASCII except space, double quote and backslash.
SCOPE_TOKEN = re.compile(r"\A[\x21\x23-\x5B\x5D-\x7E]{1,64}\Z")


class Scope(models.Model):
    """A scope of the catalogue: grants may name only these."""

    name = models.CharField(max_length=64, unique=True, validators=[RegexValidator(
        SCOPE_TOKEN, "A scope is an RFC 6749 scope token: 1 to 64 printable ASCII characters, no space, "
                     "double quote or backslash.")])
    description = models.TextField(blank=True)
    # Role values of the providers that offer this scope (informational; empty: any).
    provider_roles = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("manage_scopes", "Can define scopes in the catalogue")]

    def __str__(self) -> str:
        return self.name


class ParticipantActivity(models.Model):
    """Token endpoint activity of one participant's client in one hour (registry.activity):
    a row per participant and hour, never a row per token."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="activity")
    hour = models.DateTimeField()
    issued = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    last_token_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["participant", "hour"], name="unique_activity_hour")]

    def __str__(self) -> str:
        return f"{self.participant_id} @ {self.hour:%Y-%m-%d %H}:00: {self.issued} issued, {self.failed} failed"


class AuditAction(models.TextChoices):
    ORGANISATION_CREATED = "ORGANISATION_CREATED", "Organisation created"
    ORGANISATION_UPDATED = "ORGANISATION_UPDATED", "Organisation updated"
    PARTICIPANT_APPLIED = "PARTICIPANT_APPLIED", "Participant applied"
    PARTICIPANT_UNDER_REVIEW = "PARTICIPANT_UNDER_REVIEW", "Participant under review"
    PARTICIPANT_APPROVED = "PARTICIPANT_APPROVED", "Participant approved"
    PARTICIPANT_REJECTED = "PARTICIPANT_REJECTED", "Participant rejected"
    PARTICIPANT_SUSPENDED = "PARTICIPANT_SUSPENDED", "Participant suspended"
    PARTICIPANT_REINSTATED = "PARTICIPANT_REINSTATED", "Participant reinstated"
    PARTICIPANT_OFFBOARDED = "PARTICIPANT_OFFBOARDED", "Participant offboarded"
    OFFBOARDING_REQUESTED = "OFFBOARDING_REQUESTED", "Offboarding requested"
    OFFBOARDING_CANCELLED = "OFFBOARDING_CANCELLED", "Offboarding request withdrawn"
    SCOPE_DEFINED = "SCOPE_DEFINED", "Scope defined"
    SCOPE_UPDATED = "SCOPE_UPDATED", "Scope updated"
    CLIENT_SECRET_ROTATED = "CLIENT_SECRET_ROTATED", "Client secret rotated"
    TOKENS_REVOKED = "TOKENS_REVOKED", "All tokens revoked"
    CLIENT_AUTH_LOCKOUT = "CLIENT_AUTH_LOCKOUT", "Client authentication locked out"
    KEY_ADDED = "KEY_ADDED", "Public key added"
    KEY_REVOKED = "KEY_REVOKED", "Public key revoked"
    ENDPOINT_ADDED = "ENDPOINT_ADDED", "Endpoint added"
    ENDPOINT_REMOVED = "ENDPOINT_REMOVED", "Endpoint removed"
    MAPPING_GRANTED = "MAPPING_GRANTED", "Resource mapping granted"
    MAPPING_REMOVED = "MAPPING_REMOVED", "Resource mapping removed"
    SIGNING_KEY_CREATED = "SIGNING_KEY_CREATED", "Service signing key created"
    SIGNING_KEY_PREPUBLISHED = "SIGNING_KEY_PREPUBLISHED", "Service signing key pre-published"
    SIGNING_KEY_ACTIVATED = "SIGNING_KEY_ACTIVATED", "Service signing key activated"
    SIGNING_KEY_RETIRED = "SIGNING_KEY_RETIRED", "Service signing key retired, private half erased"
    SIGNING_KEYS_REENCRYPTED = "SIGNING_KEYS_REENCRYPTED", "Service signing keys re-encrypted"


class AuditEvent(models.Model):
    """Append-only; each event carries the hash of the one before it, and its own hash is
    keyed with the audit key ``key_id`` names (see ``registry.audit``).

    ``actor_label`` is the actor's username (or "system", "os:<user>") as it was when the
    event was written: the immutable snapshot the link covers. ``actor`` points to the
    account for navigation only. An account that acted is deactivated, never deleted
    (PROTECT; the admin's delete page says so)."""

    sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    occurred_at = models.DateTimeField(default=timezone.now, editable=False)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+")
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    # Indexed by (participant, -sequence) below, which also serves lookups by participant alone.
    participant = models.ForeignKey(Participant, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="audit_events", db_index=False)
    organisation = models.ForeignKey(Organisation, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="audit_events")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)
    key_id = models.CharField(max_length=8, default="", editable=False)

    class Meta:
        ordering = ["-sequence"]
        # What the admin filters on (action, actor_label, participant). A constraint or an index, not
        # unique=True or db_index=True, keeps each column to one index: PostgreSQL adds a LIKE index
        # to those, which no query here uses.
        indexes = [models.Index(fields=["participant", "-sequence"]), models.Index(fields=["actor_label"]),
                   models.Index(fields=["action"], name="registry_auditevent_action")]
        constraints = [models.UniqueConstraint(fields=["hash"], name="registry_auditevent_hash_unique")]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} by {self.actor_label}"


class AuditChainHead(models.Model):
    """One row, locked by every append so the chain never forks."""

    sequence = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit chain head #{self.sequence}"


class AuditVerification(models.Model):
    """One row: a signed checkpoint (``registry.audit.checkpoint_sign``) of the last event
    a verification found intact, so the next one need only check the events after it.
    Its signature is checked before it is trusted; one that does not verify is ignored."""

    checkpoint = models.JSONField()
    verified_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"audit log verified up to #{self.checkpoint.get('sequence')} at {self.verified_at:%Y-%m-%d %H:%M}"


class ListGeneration(models.Model):
    """One row whose value changes with every change to what any list of participants
    shows; cached list pages are good while it stays the same (registry.invalidation)."""

    value = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"participant list generation {self.value}"
