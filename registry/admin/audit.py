"""The audit log in the admin: read-only for everyone, each event's changes as a table,
the chain's state, and the CSV export of what the list shows."""

import json
import uuid

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from authservice.admin import ReadOnlyAdmin
from registry.admin.export import audit_csv_rows
from registry.admin.filters import OccurredBetweenFilter
from registry.audit_status import chain_state
from registry.models import AuditEvent


def audit_changes(before: dict, after: dict) -> list[tuple[str, object, object]]:
    """(field, old, new) for every field whose value differs, in name order."""
    missing = object()
    rows = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, missing), after.get(name, missing)
        if old != new:
            rows.append((name, None if old is missing else old, None if new is missing else new))
    return rows


def _shown(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only for everyone, superusers included: the log is append-only."""

    list_display = ["sequence", "occurred_at", "action", "actor_label", "participant", "organisation"]
    list_filter = [OccurredBetweenFilter, "action", "actor_label", ("participant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["organisation__legal_name", "actor_label"]
    list_select_related = ["participant__organisation", "organisation"]
    change_list_template = "registry/admin/auditevent_change_list.html"
    change_form_template = "registry/admin/auditevent_change_form.html"
    fields = ["sequence", "occurred_at", "action", "actor", "actor_label", "participant", "organisation",
              "changes", "before", "after", "prev_hash", "hash", "key_id"]
    readonly_fields = fields

    class Media:
        css = {"all": ["registry/admin/registry.css"]}

    @admin.display(description="Changes")
    def changes(self, event):
        rows = audit_changes(event.before or {}, event.after or {})
        if not rows:
            return "—"
        return format_html('<table class="audit-diff"><thead><tr><th>Field</th><th>Before</th><th></th>'
                           '<th>After</th></tr></thead><tbody>{}</tbody></table>',
                           format_html_join("", '<tr><th>{}</th><td class="old">{}</td><td>→</td>'
                                                '<td class="new">{}</td></tr>',
                                            ((name, _shown(old), _shown(new)) for name, old, new in rows)))

    def lookup_allowed(self, lookup, value, request=None):
        # An organisation's "History" link filters by organisation; no filter is shown for it.
        return lookup == "organisation__id__exact" or super().lookup_allowed(lookup, value, request)

    def get_urls(self):
        export = path("export.csv", self.admin_site.admin_view(self.export_csv_view),
                      name="registry_auditevent_export")
        return [export, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "chain": chain_state(),
                         "export_url": f"{reverse('admin:registry_auditevent_export')}?{request.GET.urlencode()}"}
        return super().changelist_view(request, extra_context)

    def export_csv_view(self, request):
        """The changelist's events, filtered and searched as shown, as CSV (streamed)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as exc:
            return HttpResponse(f"Bad filter: {exc}", status=400, content_type="text/plain; charset=utf-8")
        queryset = changelist.queryset.select_related("participant", "organisation")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response = StreamingHttpResponse(audit_csv_rows(queryset), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="audit-events-{stamp}.csv"'
        response["Cache-Control"] = "no-store"
        return response

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        try:
            return queryset.filter(participant__participant_id=uuid.UUID(term)), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
