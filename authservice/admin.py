"""Read-only admin views of OAuth clients and revoked tokens (the signing keys' is
``signing.admin``; ``SigningKeyAdmin`` is re-exported here under its old import path).

Clients belong to participants and change only through the registry's workflows;
django-oauth-toolkit's editable admin pages (which would let anyone with access
edit a client secret or hand out grants) are replaced."""

from django.contrib import admin
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from authservice.models import RevokedToken
from signing.admin import SigningKeyAdmin  # noqa: F401  (old import path)

for model in (get_application_model(), get_access_token_model(), get_grant_model(), get_id_token_model(),
              get_refresh_token_model()):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(get_application_model())
class OAuthClientAdmin(ReadOnlyAdmin):
    list_display = ["name", "client_id", "is_active", "created", "deactivated_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "client_id"]
    fields = ["name", "client_id", "client_type", "authorization_grant_type", "is_active", "deactivated_at",
              "tokens_not_before", "created", "updated"]
    readonly_fields = fields


@admin.register(RevokedToken)
class RevokedTokenAdmin(ReadOnlyAdmin):
    list_display = ["client_id", "revoked_at", "expires_at"]
    search_fields = ["client_id"]
    fields = ["client_id", "jti", "revoked_at", "expires_at"]
    readonly_fields = fields
