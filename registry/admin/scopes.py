"""The scope catalogue in the admin: changed through ``registry.services.scope_define``, never deleted."""

from django.contrib import admin

from registry import services
from registry.admin.base import ServiceBackedAdmin
from registry.admin.forms import ScopeForm
from registry.models import Scope


@admin.register(Scope)
class ScopeAdmin(ServiceBackedAdmin):
    """The scope catalogue: grants pick from it. Changes go through ``scope_define``
    (audited); a scope is never deleted, mappings may hold it."""

    form = ScopeForm
    list_display = ["name", "description", "provider_roles_display", "updated_at"]
    search_fields = ["name", "description"]
    fields = ["name", "description", "provider_roles"]

    @admin.display(description="Provider roles")
    def provider_roles_display(self, scope):
        return ", ".join(scope.provider_roles) or "any"

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj is not None else []

    def has_add_permission(self, request):
        return request.user.has_perm("registry.manage_scopes")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("registry.manage_scopes")

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        saved, _ = services.scope_define(name=obj.name, description=form.cleaned_data.get("description", ""),
                                         provider_roles=form.cleaned_data.get("provider_roles", []),
                                         acting_user=request.user)
        obj.pk = saved.pk
