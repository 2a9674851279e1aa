"""Organisations in the admin: created and changed through ``registry.services``, never deleted."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse

from registry import services
from registry.admin.base import ServiceBackedAdmin
from registry.models import Organisation


@admin.register(Organisation)
class OrganisationAdmin(ServiceBackedAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["legal_name", "website", "contact_email", "org_id", "created_at"]
    search_fields = ["legal_name", "contact_email"]
    readonly_fields = ["org_id", "created_at", "updated_at"]
    fields = ["legal_name", "website", "contact_email", "contact_phone", "org_id", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        values = {field: form.cleaned_data.get(field, "") for field in services.ORGANISATION_FIELDS}
        if change:
            saved = services.organisation_update(organisation=obj, acting_user=request.user, **values)
        else:
            saved = services.organisation_create(acting_user=request.user, **values)
        obj.pk, obj.org_id = saved.pk, saved.org_id

    def has_delete_permission(self, request, obj=None):
        return False

    def history_view(self, request, object_id, extra_context=None):
        """"History" is the organisation's audit events: Django's own log is never written."""
        organisation = self.get_object(request, object_id)
        if organisation is None:
            raise Http404("No such organisation.")
        if not self.has_view_permission(request, organisation):
            raise PermissionDenied
        return HttpResponseRedirect(f"{reverse('admin:registry_auditevent_changelist')}"
                                    f"?organisation__id__exact={organisation.pk}")
