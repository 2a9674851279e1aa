"""A read-only admin view of the service's signing keys: they change only through
``rotate_signing_key`` and ``reencrypt_keys`` (``signing.keys``), never by hand."""

from django.contrib import admin

from signing.models import SigningKey


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ["kid", "alg", "state", "created_at", "activated_at", "retired_at"]
    list_filter = ["state", "alg"]
    fields = ["kid", "alg", "state", "public_jwk", "created_at", "activated_at", "retired_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
