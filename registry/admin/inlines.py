"""The participant page's tables: its endpoints, keys and resource mappings, read-only,
each row with the link to the page that removes or revokes it."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from registry.admin.base import ReadOnlyInline, _short_with_copy
from registry.models import Endpoint, KeyStatus, PublicKey, ResourceMapping


class EndpointInline(ReadOnlyInline):
    model = Endpoint
    fields = ["url", "created_at", "remove_link"]
    readonly_fields = fields

    @admin.display(description="")
    def remove_link(self, endpoint):
        url = reverse("admin:registry_participant_endpoint_remove", args=[endpoint.participant_id, endpoint.pk])
        return format_html('<a class="deletelink" href="{}">Remove</a>', url)


class PublicKeyInline(ReadOnlyInline):
    model = PublicKey
    fields = ["kid_display", "thumbprint_display", "alg", "source_format", "not_before", "not_after", "status",
              "revoke_link"]
    readonly_fields = fields

    # Thumbprint-sized ids, shortened with a copy button, keep the table inside 1280 px.
    @admin.display(description="Kid")
    def kid_display(self, key):
        return _short_with_copy(key.kid, 16) if len(key.kid) > 20 else key.kid

    @admin.display(description="Thumbprint")
    def thumbprint_display(self, key):
        return _short_with_copy(key.thumbprint, 16)

    @admin.display(description="")
    def revoke_link(self, key):
        if key.status != KeyStatus.ACTIVE:
            return ""
        url = reverse("admin:registry_participant_key_revoke", args=[key.participant_id, key.pk])
        return format_html('<a class="deletelink" href="{}">Revoke</a>', url)


class MappingAsClientInline(ReadOnlyInline):
    model = ResourceMapping
    fk_name = "client"
    verbose_name = "access granted to this participant (as client)"
    verbose_name_plural = "access granted to this participant (as client)"
    fields = ["provider_label", "scopes", "created_at", "remove_link"]
    readonly_fields = fields

    @admin.display(description="Provider")
    def provider_label(self, mapping):
        return mapping.provider or "the registry"

    @admin.display(description="")
    def remove_link(self, mapping):
        url = reverse("admin:registry_participant_mapping_remove", args=[mapping.client_id, mapping.pk])
        return format_html('<a class="deletelink" href="{}">Remove</a>', url)


class MappingAsProviderInline(MappingAsClientInline):
    fk_name = "provider"
    verbose_name = "participants allowed to call this one (as provider)"
    verbose_name_plural = "participants allowed to call this one (as provider)"
    fields = ["client", "scopes", "created_at", "remove_link"]
    readonly_fields = fields
