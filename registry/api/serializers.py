"""Input (query) and output serializers of the registry API. Nothing secret is ever
a field here: no client secret, no private key material."""

import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from authservice import not_before
from registry import selectors
from registry.models import Participant, Role, Status

# The OCEN reference shape has an approvedBy field; every participant sees it, so it
# names the approving authority, not the registry operator who clicked Approve.
APPROVED_BY = "registry"
VISIBLE_STATUSES = [s for s in Status.values if s != Status.OFFBOARDED]
SEARCH_MIN_LENGTH = 3  # pg_trgm indexes three-character runs


class ParticipantFilterSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.values, required=False)
    status = serializers.ChoiceField(choices=VISIBLE_STATUSES, required=False)
    organisation = serializers.UUIDField(required=False, help_text="org_id of the organisation")
    # No NUL: PostgreSQL text cannot hold one (the pattern tells API clients so). At least
    # SEARCH_MIN_LENGTH characters with a letter or digit: the trigram index serves such a
    # term at any size; a shorter one, or punctuation alone, is a scan of every organisation.
    search = serializers.RegexField(r"^[^\x00]*$", required=False, min_length=SEARCH_MIN_LENGTH, max_length=100,
                                    help_text=f"part of the organisation name, any case: at least {SEARCH_MIN_LENGTH} "
                                              "characters, one of them a letter or digit (no NUL character)")
    page = serializers.IntegerField(required=False, min_value=1,
                                    help_text="Numbered pages sorted by name, with a count (the default; legacy for "
                                              "crawling: deep pages cost more)")
    cursor = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                   help_text="Keyset pages: empty to start, then follow `next`. Stable under "
                                             "concurrent inserts, flat cost at any depth, no count")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)

    def validate_search(self, value: str) -> str:
        if not any(character.isalnum() for character in value):
            raise serializers.ValidationError("Search for a letter or digit of the name.")
        return value

    def to_internal_value(self, data):
        # DRF reads "?status=" from a query string as "not given"; an empty enum or
        # number is a client mistake, and the schema says so.
        empty = [name for name in ("role", "status", "organisation", "page", "page_size") if data.get(name) == ""]
        if empty:
            raise serializers.ValidationError({name: ["This value may not be empty."] for name in empty})
        return super().to_internal_value(data)


class OrganisationSerializer(serializers.Serializer):
    org_id = serializers.UUIDField()
    legal_name = serializers.CharField()
    website = serializers.CharField()


class JWKSerializer(serializers.Serializer):
    """An RFC 7517 public JWK (``x5c`` when a certificate was registered)."""

    kty = serializers.CharField()
    kid = serializers.CharField()
    alg = serializers.CharField()
    use = serializers.CharField()
    n = serializers.CharField(required=False)
    e = serializers.CharField(required=False)
    crv = serializers.CharField(required=False)
    x = serializers.CharField(required=False)
    y = serializers.CharField(required=False)
    x5c = serializers.ListField(child=serializers.CharField(), required=False)

    def to_representation(self, instance):
        return dict(instance.public_jwk)


class KeySummarySerializer(serializers.Serializer):
    kid = serializers.CharField()
    thumbprint = serializers.CharField()
    alg = serializers.CharField()
    not_before = serializers.DateTimeField(allow_null=True)
    not_after = serializers.DateTimeField(allow_null=True)


TOKENS_NOT_BEFORE_HELP = (
    "Every token of this participant whose iat (epoch seconds) is earlier than this instant is refused. "
    "RFC 3339 UTC with whole seconds and a Z, e.g. 2025-01-31T12:00:06Z; null if never set. It moves on "
    "suspension, reinstatement, \"revoke all tokens\" and a secret rotation that ends old tokens."
)
KEYS_HELP = "The participant's active public keys; empty unless its status is APPROVED."


class ParticipantSerializer(serializers.Serializer):
    participant_id = serializers.UUIDField()
    role = serializers.ChoiceField(choices=Role.values)
    status = serializers.ChoiceField(choices=VISIBLE_STATUSES)
    tokens_not_before = serializers.SerializerMethodField(help_text=TOKENS_NOT_BEFORE_HELP)
    organisation = OrganisationSerializer()
    endpoints = serializers.SerializerMethodField()
    keys = serializers.SerializerMethodField(help_text=KEYS_HELP)
    approved_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_tokens_not_before(self, participant: Participant) -> str | None:
        return not_before.as_text(selectors.tokens_not_before(participant))

    @extend_schema_field(serializers.ListField(child=serializers.URLField()))
    def get_endpoints(self, participant: Participant) -> list[str]:
        return [endpoint.url for endpoint in participant.endpoints.all()]

    @extend_schema_field(JWKSerializer(many=True))
    def get_keys(self, participant: Participant) -> list[dict]:
        return [dict(key.public_jwk) for key in selectors.published_keys(participant)]


class ParticipantPageSerializer(serializers.Serializer):
    count = serializers.IntegerField(allow_null=True, help_text="Exact count with numbered pages; null with the "
                                                                "cursor, which counts nothing")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ParticipantSerializer(many=True)


class JWKSetSerializer(serializers.Serializer):
    keys = JWKSerializer(many=True, help_text=KEYS_HELP)


class OcenParticipantSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="org_id")
    participantName = serializers.CharField(source="legal_name")
    participantWebsite = serializers.CharField(source="website")
    participantEmail = serializers.CharField(source="contact_email")
    participantPhone = serializers.CharField(source="contact_phone")


class OcenParticipantRoleSerializer(serializers.Serializer):
    """The shape OCEN's reference participant code reads from the registry."""

    id = serializers.UUIDField(source="participant_id")
    participantRole = serializers.CharField(source="role")
    participantRoleStatus = serializers.CharField(source="status")
    isApproved = serializers.SerializerMethodField()
    approvedOn = serializers.DateTimeField(source="approved_at", allow_null=True)
    approvedBy = serializers.SerializerMethodField()
    baseUrl = serializers.SerializerMethodField()
    publicKey = serializers.SerializerMethodField()
    participant = OcenParticipantSerializer(source="organisation")

    def get_isApproved(self, participant: Participant) -> bool:
        return participant.status == Status.APPROVED

    def get_approvedBy(self, participant: Participant) -> str | None:
        """Who approved, as the network sees it: the registry, never an operator's username."""
        return APPROVED_BY if participant.approved_at else None

    def get_baseUrl(self, participant: Participant) -> str | None:
        endpoints = list(participant.endpoints.all())
        return endpoints[0].url if endpoints else None

    def get_publicKey(self, participant: Participant) -> str | None:
        """The newest active key, as a JWK JSON string (the reference code parses it); none
        unless the participant is APPROVED, like its key set."""
        keys = participant.active_keys
        if not keys or participant.status != Status.APPROVED:
            return None
        return json.dumps(keys[-1].public_jwk, sort_keys=True)
