"""Participants in the admin: the list, the participant page with its workflow buttons,
onboarding, the one-time secret page, the pages that remove a key, endpoint or mapping,
and bulk offboarding confirmed like ``delete_selected``."""

import contextlib
import uuid
from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, Q, Subquery
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from authservice import not_before
from registry import credential_handoff, services
from registry.activity import participant_activity
from registry.admin.base import SeeOther, ServiceBackedAdmin, _breakable_time, _short_with_copy
from registry.admin.credentials import _configuration_download, credentials_redirect, participant_configuration
from registry.admin.forms import (
    ApproveForm,
    BulkOffboardForm,
    ConfirmForm,
    ConfirmNameForm,
    GrantMappingForm,
    OnboardForm,
    _forget_private_key,
)
from registry.admin.inlines import EndpointInline, MappingAsClientInline, MappingAsProviderInline, PublicKeyInline
from registry.admin.workflows import FOUR_EYES_STEPS, WORKFLOWS, WORKFLOWS_BY_SLUG, Workflow, _four_eyes_on
from registry.four_eyes import pending_action
from registry.models import HOLDING_STATUSES, Endpoint, Participant, ParticipantActivity, PublicKey, ResourceMapping
from registry.selectors import offboarding_plan

EMPTY_PLAN = {"client_id": None, "keys": [], "endpoints": [], "mappings": []}


def last_activity(participant: Participant):
    """When the participant last did or had something done: its last token (the
    activity counters, annotated by the list's queryset) or its record's last change."""
    moments = [participant.updated_at, getattr(participant, "last_token_at", None)]
    return max(moment for moment in moments if moment is not None)


@admin.register(Participant)
class ParticipantAdmin(ServiceBackedAdmin):
    # Fits 1280 px: the role under the name, both ids in one column, times that may break
    # between date and time, the base URL cut with an ellipsis (whole in its title).
    list_display = ["participant_display", "status_badge", "ids", "base_url", "approved_at_display",
                    "last_activity_display"]
    list_display_links = ["participant_display"]
    list_filter = ["status", "role"]
    list_select_related = ["organisation", "client"]
    search_fields = ["organisation__legal_name"]
    ordering = ["organisation__legal_name", "role"]
    change_form_template = "registry/admin/participant_change_form.html"
    inlines = [EndpointInline, PublicKeyInline, MappingAsClientInline, MappingAsProviderInline]
    actions = ["offboard_selected"]

    class Media:
        css = {"all": ["registry/admin/registry.css"]}
        js = ["registry/admin/copy.js"]

    fields = ["participant_id", "organisation", "role", "status_badge", "status_reason", "status_changed_at",
              "client_id_display", "tokens_not_before_display", "approved_by", "approved_at", "created_at",
              "updated_at"]
    readonly_fields = fields

    # --- list ---------------------------------------------------------------------------

    @admin.display(description="Status", ordering="status")
    def status_badge(self, participant):
        # Colours live in registry.css: the CSP refuses inline styles.
        return format_html('<span class="status-badge status-{}">{}</span>', participant.status,
                           participant.get_status_display())

    @admin.display(description="Client id")
    def client_id_display(self, participant):
        return participant.client.client_id if participant.client_id else "—"

    @admin.display(description="Participant", ordering="organisation__legal_name")
    def participant_display(self, participant):
        return format_html('{}<span class="list-role">{}</span>', participant.organisation.legal_name,
                           participant.get_role_display())

    @admin.display(description="Ids (participant, client)")
    def ids(self, participant):
        client = _short_with_copy(participant.client.client_id) if participant.client_id else "—"
        return format_html('<span class="id-line"><abbr title="participant id">P</abbr> {}</span>'
                           '<span class="id-line"><abbr title="client id">C</abbr> {}</span>',
                           _short_with_copy(str(participant.participant_id)), client)

    @admin.display(description="Base URL")
    def base_url(self, participant):
        endpoints = participant.endpoints.all()  # prefetched by get_queryset
        if not endpoints:
            return "—"
        return format_html('<span class="base-url" title="{}">{}</span>', endpoints[0].url, endpoints[0].url)

    @admin.display(description="Approved at", ordering="approved_at")
    def approved_at_display(self, participant):
        return _breakable_time(participant.approved_at)

    @admin.display(description="Last activity", ordering="updated_at")
    def last_activity_display(self, participant):
        return _breakable_time(last_activity(participant))

    def get_queryset(self, request):
        # The last token from the newest hourly activity row: one indexed lookup per listed row.
        last_token = (ParticipantActivity.objects.filter(participant=OuterRef("pk")).order_by("-hour")
                      .values("last_token_at")[:1])
        return (super().get_queryset(request).prefetch_related("endpoints")
                .annotate(last_token_at=Subquery(last_token)))

    @admin.display(description="Tokens issued before this are refused")
    def tokens_not_before_display(self, participant):
        cutoff = participant.client.tokens_not_before if participant.client_id else None
        return not_before.as_text(cutoff) or "—"

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            extra = Q(client__client_id=term)
            with contextlib.suppress(ValueError):
                term_uuid = uuid.UUID(term)
                extra |= Q(participant_id=term_uuid) | Q(organisation__org_id=term_uuid)
            queryset |= self.model.objects.filter(extra)
        if request.GET.get("field_name"):
            # The grant form's autocomplete: only participants a mapping may name.
            queryset = queryset.filter(status__in=HOLDING_STATUSES)
        return queryset, may_have_duplicates

    def has_add_permission(self, request):
        return request.user.has_perm("registry.onboard_participant")

    def has_change_permission(self, request, obj=None):
        return False  # every change is a workflow page below

    def has_delete_permission(self, request, obj=None):
        return False  # participants are offboarded, never deleted

    # --- URLs ------------------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        custom = [
            path("onboard/", wrap(self.onboard_view), name="registry_participant_onboard"),
            path("<int:pk>/keys/<int:key_pk>/revoke/", wrap(self.revoke_key_view),
                 name="registry_participant_key_revoke"),
            path("<int:pk>/endpoints/<int:endpoint_pk>/remove/", wrap(self.remove_endpoint_view),
                 name="registry_participant_endpoint_remove"),
            path("<int:pk>/mappings/<int:mapping_pk>/remove/", wrap(self.remove_mapping_view),
                 name="registry_participant_mapping_remove"),
            path("<int:pk>/workflow/<slug:slug>/", wrap(self.workflow_view), name="registry_participant_workflow"),
            path("<int:pk>/credentials/<str:handle>/", wrap(self.credentials_view),
                 name="registry_participant_credentials"),
            path("<int:pk>/credentials/<str:handle>/download/", wrap(self.credentials_download_view),
                 name="registry_participant_credentials_download"),
            path("<int:pk>/configuration.json", wrap(self.configuration_view),
                 name="registry_participant_configuration"),
        ]
        return custom + super().get_urls()

    def add_view(self, request, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("admin:registry_participant_onboard"))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        participant = self.get_object(request, object_id)
        if participant is not None:
            credential_handoff.discard_shown(request, participant.pk)
        extra_context = {**(extra_context or {}), "workflows": self._available(request, participant)}
        if participant is not None:
            extra_context.update(pending_action=pending_action(participant),
                                 activity=participant_activity(participant))
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        """"History" is the participant's audit events: Django's own log is never written."""
        participant = self.get_object(request, object_id)
        if participant is None:
            raise Http404("No such participant.")
        if not self.has_view_permission(request, participant):
            raise PermissionDenied
        return HttpResponseRedirect(f"{reverse('admin:registry_auditevent_changelist')}"
                                    f"?participant__id__exact={participant.pk}")

    def _available(self, request, participant) -> list[Workflow]:
        if participant is None:
            return []
        # Four-eyes: the steps this operator may not take are not offered to them (the
        # services refuse them anyway); the page says who must act instead.
        pending = pending_action(participant)
        barred = set() if pending is None or pending.may_act(request.user) else FOUR_EYES_STEPS
        return [w for w in WORKFLOWS if participant.status in w.statuses
                and (w.available is None or w.available(participant))
                and w.slug not in barred
                and request.user.has_perm(f"registry.{w.permission}")]

    # --- pages -------------------------------------------------------------------------------

    def _page(self, request, *, participant, title, form, explanation="", removes=None, danger=False,
              submit="Confirm", status=200, approval=None) -> HttpResponse:
        _forget_private_key(form)
        return TemplateResponse(request, "registry/admin/workflow.html", {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "participant": participant,
            "form": form,
            "explanation": explanation,
            # Every list present, so the template never falls back to a dict's own attributes
            # (``removes.keys`` on a plan without "keys" was the dict's keys() method).
            "removes": {**EMPTY_PLAN, **removes} if removes else None,
            "danger": danger,
            "submit": submit,
            # The approve page: what is approved and its digest (registry.four_eyes).
            "approval": approval,
            "cancel_url": (reverse("admin:registry_participant_change", args=[participant.pk])
                           if participant else reverse("admin:registry_participant_changelist")),
        }, status=status)

    def _run(self, request, form, action: Callable[[], object], on_success: Callable[[object], HttpResponse],
             **page) -> HttpResponse:
        try:
            result = action()
        except ValidationError as exc:
            for message in exc.messages:
                form.add_error(None, message)
            return self._page(request, form=form, status=400, **page)
        return on_success(result)

    def _back_to(self, request, participant, message: str) -> HttpResponse:
        self.message_user(request, message, messages.SUCCESS)
        return SeeOther(reverse("admin:registry_participant_change", args=[participant.pk]))

    def onboard_view(self, request):
        if not request.user.has_perm("registry.onboard_participant"):
            raise PermissionDenied
        form = OnboardForm(request.POST or None)
        page = {"participant": None, "title": "Onboard a participant",
                "explanation": "Records the application. Approve it on the next page to create its credentials.",
                "submit": "Record application"}
        if request.method != "POST" or not form.is_valid():
            return self._page(request, form=form, status=400 if request.method == "POST" else 200, **page)
        data = form.cleaned_data
        return self._run(request, form, lambda: services.application_submit(
            organisation=data["organisation"], new_organisation_name=data["new_organisation_name"],
            website=data.get("website", ""), contact_email=data.get("contact_email", ""), role=data["role"],
            base_url=data["base_url"], public_key=data["public_key"], kid=data.get("kid") or None,
            acting_user=request.user),
            lambda participant: self._back_to(request, participant, f"Recorded {participant}."), **page)

    def workflow_view(self, request, pk: int, slug: str):
        workflow = WORKFLOWS_BY_SLUG.get(slug)
        if workflow is None:
            raise Http404("No such workflow.")
        participant = get_object_or_404(Participant.objects.select_related("organisation", "client"), pk=pk)
        if not request.user.has_perm(f"registry.{workflow.permission}"):
            raise PermissionDenied
        takes_participant = issubclass(workflow.form_class, (GrantMappingForm, ConfirmNameForm, ApproveForm))
        kwargs = {"participant": participant} if takes_participant else {}
        form = workflow.form_class(request.POST or None, **kwargs)
        page = {"participant": participant, "title": f"{workflow.label}: {participant}",
                "explanation": workflow.explanation, "danger": workflow.danger, "submit": workflow.label,
                "removes": offboarding_plan(participant) if workflow.shows_removals else None,
                "approval": ({"content": form.approval, "digest": form.approval_digest}
                             if isinstance(form, ApproveForm) else None)}
        if request.method != "POST" or not form.is_valid():
            return self._page(request, form=form, status=400 if request.method == "POST" else 200, **page)

        def done(result):
            if isinstance(result, services.Credentials):
                return credentials_redirect(request, result, workflow.credentials_title)
            return self._back_to(request, participant,
                                 workflow.describe(result) if workflow.describe else f"{workflow.label}: done.")

        return self._run(request, form, lambda: workflow.run(participant, form.cleaned_data, request.user), done,
                         **page)

    # --- the one-time secret and the participant's configuration ---------------------------------

    def credentials_view(self, request, pk: int, handle: str):
        """Shows a new secret once; a reload finds it already shown and changes nothing."""
        participant = get_object_or_404(Participant.objects.select_related("organisation", "client"), pk=pk)
        handoff = credential_handoff.take_for_display(request, handle, participant.pk)
        response = TemplateResponse(request, "registry/admin/credentials.html", {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": handoff.title if handoff else "Client credentials",
            "participant": participant,
            "handoff": handoff,
            "configuration": participant_configuration(participant),
            "handle": handle,
            "back_url": reverse("admin:registry_participant_change", args=[participant.pk]),
        }, status=200 if handoff else 410)
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response

    def credentials_download_view(self, request, pk: int, handle: str):
        """The configuration file; with the secret only if asked, once, from the hand-off."""
        if request.method != "POST":
            return HttpResponse("Use the button on the credentials page.", status=405, headers={"Allow": "POST"})
        participant = get_object_or_404(Participant.objects.select_related("client"), pk=pk)
        if not request.POST.get("include_secret"):
            return _configuration_download(participant)
        handoff = credential_handoff.take_for_download(request, handle, participant.pk)
        current_client_id = participant.client.client_id if participant.client_id else None
        if handoff is None or handoff.client_id != current_client_id:
            self.message_user(request, "The secret is no longer available for download: it is handed out once "
                                       "and only for a few minutes. Rotate the secret again if it was lost.",
                              messages.ERROR)
            return SeeOther(reverse("admin:registry_participant_change", args=[participant.pk]))
        return _configuration_download(participant, handoff.client_secret)

    def configuration_view(self, request, pk: int):
        """The configuration file without the secret, at any time."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        participant = get_object_or_404(Participant.objects.select_related("client"), pk=pk)
        if not participant.client_id:
            raise Http404("This participant has no client (it is not approved).")
        return _configuration_download(participant)

    def _removal_view(self, request, *, participant, permission, title, removes, action):
        if not request.user.has_perm(f"registry.{permission}"):
            raise PermissionDenied
        form = ConfirmForm(request.POST or None)
        page = {"participant": participant, "title": title, "removes": removes, "danger": True,
                "submit": "Yes, remove it"}
        if request.method != "POST":
            return self._page(request, form=form, **page)
        return self._run(request, form, action, lambda _: self._back_to(request, participant, f"{title}: done."),
                         **page)

    def revoke_key_view(self, request, pk: int, key_pk: int):
        key = get_object_or_404(PublicKey, pk=key_pk, participant_id=pk)
        return self._removal_view(
            request, participant=key.participant, permission="manage_participant_keys",
            title=f"Revoke key {key.kid}", removes={"keys": [f"{key.kid} ({key.thumbprint})"]},
            action=lambda: services.public_key_revoke(key=key, acting_user=request.user))

    def remove_endpoint_view(self, request, pk: int, endpoint_pk: int):
        endpoint = get_object_or_404(Endpoint, pk=endpoint_pk, participant_id=pk)
        return self._removal_view(
            request, participant=endpoint.participant, permission="manage_participant_keys",
            title=f"Remove endpoint {endpoint.url}", removes={"endpoints": [endpoint.url]},
            action=lambda: services.endpoint_remove(endpoint=endpoint, acting_user=request.user))

    def remove_mapping_view(self, request, pk: int, mapping_pk: int):
        mapping = get_object_or_404(ResourceMapping.objects.filter(Q(client_id=pk) | Q(provider_id=pk)),
                                    pk=mapping_pk)
        participant = get_object_or_404(Participant, pk=pk)
        return self._removal_view(
            request, participant=participant, permission="manage_resource_mappings",
            title="Remove resource mapping", removes={"mappings": [str(mapping)]},
            action=lambda: services.mapping_remove(mapping=mapping, acting_user=request.user))

    # --- bulk action, confirmed like delete_selected -------------------------------------------

    @admin.action(description="Offboard selected participants", permissions=["offboard"])
    def offboard_selected(self, request, queryset):
        """Offboards them; with four-eyes, requests their offboarding (another operator confirms each)."""
        participants = list(queryset.select_related("organisation", "client"))
        confirming = request.POST.get("post") == "yes"
        form = BulkOffboardForm(request.POST if confirming else None, count=len(participants))
        four_eyes = _four_eyes_on()
        if confirming and form.is_valid():
            for participant in participants:
                try:
                    if four_eyes:
                        services.participant_offboard_request(participant=participant,
                                                              reason=form.cleaned_data["reason"],
                                                              acting_user=request.user)
                    else:
                        services.participant_offboard(participant=participant, reason=form.cleaned_data["reason"],
                                                      acting_user=request.user)
                except ValidationError as exc:
                    self.message_user(request, f"{participant}: {' '.join(exc.messages)}", messages.ERROR)
                else:
                    self.message_user(request, f"Requested offboarding of {participant}; another operator must "
                                               f"confirm it." if four_eyes else f"Offboarded {participant}.",
                                      messages.SUCCESS)
            return SeeOther(request.get_full_path())
        return TemplateResponse(request, "registry/admin/offboard_selected.html", {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Request offboarding" if four_eyes else "Offboard participants",
            "four_eyes": four_eyes,
            "plans": [(participant, offboarding_plan(participant)) for participant in participants],
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }, status=400 if confirming else 200)

    def has_offboard_permission(self, request) -> bool:
        return request.user.has_perm("registry.offboard_participant")
