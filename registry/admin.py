"""The registry administrators' back office, on the Django admin.

The admin is thin: every page that changes something calls a ``registry.services``
function, reports its ValidationError as a readable error, and never writes a model
itself. Pages that remove something show exactly what will go before acting, and
client secrets are rendered once into a no-store page, never stored or logged.

Permissions (see the README): view_* to see; onboard_participant for onboarding,
review, approval and rejection; manage_participant_keys for keys and endpoints;
manage_resource_mappings; rotate_participant_secret; suspend_participant; and
offboard_participant, which only superusers hold unless granted explicitly.
"""

import contextlib
import csv
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from urllib.parse import urljoin

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import OuterRef, Q, Subquery
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from authservice import not_before
from authservice.admin import ReadOnlyAdmin
from authservice.conf import authservice_settings
from authservice.views import server_metadata
from registry import credential_handoff, services
from registry.activity import participant_activity
from registry.admin_forms import (
    AddEndpointForm,
    AddKeyForm,
    BulkOffboardForm,
    ConfirmForm,
    ConfirmNameForm,
    GrantMappingForm,
    OffboardForm,
    OnboardForm,
    ReasonForm,
    RotateSecretForm,
    ScopeForm,
)
from registry.audit_status import chain_state
from registry.four_eyes import approval_content, content_digest, pending_action
from registry.key_material import PRIVATE_JWK_MEMBERS
from registry.models import (
    HOLDING_STATUSES,
    AuditEvent,
    Endpoint,
    KeyStatus,
    Organisation,
    Participant,
    ParticipantActivity,
    PublicKey,
    ResourceMapping,
    Scope,
    Status,
)
from registry.selectors import offboarding_plan


class SeeOther(HttpResponseRedirect):
    """303: after a POST that changed something, the browser GETs the next page, so a
    reload or the back button repeats nothing."""

    status_code = 303


def credentials_redirect(request: HttpRequest, credentials: services.Credentials, title: str) -> HttpResponse:
    """Hand the new secret to its one-time page (see ``registry.credential_handoff``)."""
    handle = credential_handoff.store(request, credentials, title)
    return SeeOther(reverse("admin:registry_participant_credentials", args=[credentials.participant.pk, handle]))


def participant_configuration(participant: Participant, client_secret: str | None = None) -> dict:
    """What a participant's developers configure: the client id, the service's URLs and,
    only when the operator asks on the one-time page, the secret."""
    metadata = server_metadata()
    origin = authservice_settings.issuer_origin
    configuration = {
        "participant_id": str(participant.participant_id),
        "client_id": participant.client.client_id if participant.client_id else None,
        "issuer": metadata["issuer"],
        "token_endpoint": metadata["token_endpoint"],
        "jwks_uri": metadata["jwks_uri"],
        "registry_url": urljoin(origin + reverse("registry-api:participant-list"), "./"),
    }
    if client_secret is not None:
        configuration["client_secret"] = client_secret
    return configuration


def _configuration_download(participant: Participant, client_secret: str | None = None) -> JsonResponse:
    response = JsonResponse(participant_configuration(participant, client_secret), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="ocen-participant-{participant.participant_id}.json"'
    response["Cache-Control"] = "no-store"
    return response


def _is_private_key_material(text: str) -> bool:
    if "PRIVATE KEY" in text:
        return True
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and bool(PRIVATE_JWK_MEMBERS & set(data))


def _forget_private_key(form) -> None:
    """A refused private key is never echoed back into the page (nor its history)."""
    if form.is_bound and "public_key" in form.fields and _is_private_key_material(form.data.get("public_key", "")):
        form.data = form.data.copy()
        form.data["public_key"] = ""


class ServiceBackedAdmin(admin.ModelAdmin):
    """A refused service call in a standard admin form becomes a message, not a 500."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


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


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


SHORT_ID_CHARS = 8
EMPTY_PLAN = {"client_id": None, "keys": [], "endpoints": [], "mappings": []}


def _short_with_copy(value: str, chars: int = SHORT_ID_CHARS):
    """The first characters of a long id, the whole id in its title, and a copy button
    (registry/admin/copy.js): lists stay one line wide at 1280 px."""
    return format_html('<span class="short-id"><code title="{}">{}</code>'
                       '<button type="button" class="copy-id" data-copy-value="{}" title="Copy {}">'
                       'Copy</button></span>', value, value[:chars] + ("…" if len(value) > chars else ""), value,
                       value)


def _breakable_time(value):
    """A time in the admin's format, allowed to break between its date and its time."""
    if value is None:
        return "—"
    text = date_format(timezone.localtime(value), "DATETIME_FORMAT")
    day, _, rest = text.partition(" ")
    return format_html('<span class="nowrap">{}</span> <span class="nowrap">{}</span>', day, rest)


def last_activity(participant: Participant):
    """When the participant last did or had something done: its last token (the
    activity counters, annotated by the list's queryset) or its record's last change."""
    moments = [participant.updated_at, getattr(participant, "last_token_at", None)]
    return max(moment for moment in moments if moment is not None)


def _grant(participant: Participant, data: dict, user):
    client, provider = {GrantMappingForm.AS_CLIENT: (participant, data["other"]),
                        GrantMappingForm.AS_PROVIDER: (data["other"], participant),
                        GrantMappingForm.AT_REGISTRY: (participant, None)}[data["direction"]]
    return services.mapping_grant(client=client, provider=provider, scopes=[scope.name for scope in data["scopes"]],
                                  acting_user=user, replace=data["replace"],
                                  at_registry=data["direction"] == GrantMappingForm.AT_REGISTRY,
                                  confirm_unapproved_provider=data["confirm_unapproved_provider"])


def _granted(mapping) -> str:
    if not mapping.scopes_before:
        return f"Granted {mapping.scopes}."
    if mapping.scopes_before == mapping.scopes:
        return f"Nothing changed: the mapping already holds {mapping.scopes}."
    verb = "Replaced" if not set(mapping.scopes_before.split()) <= set(mapping.scopes.split()) else "Added"
    return f"{verb}: before {mapping.scopes_before}; after {mapping.scopes}."


class ApproveForm(ConfirmForm):
    """The approve page: carries the digest of what the operator was shown, so an
    application changed since is refused rather than approved unseen."""

    digest = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, participant: Participant, **kwargs):
        super().__init__(*args, **kwargs)
        self.approval = approval_content(participant)
        self.approval_digest = content_digest(self.approval)
        self.fields["digest"].initial = self.approval_digest


def _approve(participant: Participant, data: dict, user):
    return services.participant_approve(participant=participant, acting_user=user,
                                        expected_digest=data.get("digest") or None)


def _four_eyes_on() -> bool:
    return authservice_settings.FOUR_EYES


@dataclass(frozen=True)
class Workflow:
    """One button on the participant page: who may use it, when, and what it does.

    ``run(participant, cleaned_data, user)`` calls the service; a result that is
    ``Credentials`` is shown once on the secret page, anything else returns to the
    participant with a message.
    """

    slug: str
    label: str
    permission: str
    statuses: tuple[str, ...]
    run: Callable[[Participant, dict, object], object]
    form_class: type = ConfirmForm
    danger: bool = False
    explanation: str = ""
    shows_removals: bool = False
    credentials_title: str = "Client credentials"
    # Shown only when this also holds (four-eyes steps); None: always.
    available: Callable[[Participant], bool] | None = None
    # The success message from the service's result; None: "<label>: done."
    describe: Callable[[object], str] | None = None


LIVE = (Status.APPLIED, Status.UNDER_REVIEW, Status.APPROVED, Status.SUSPENDED)
WORKFLOWS = [
    Workflow("review", "Start review", "onboard_participant", (Status.APPLIED,),
             lambda p, data, user: services.participant_start_review(participant=p, acting_user=user)),
    Workflow("approve", "Approve", "onboard_participant", (Status.APPLIED, Status.UNDER_REVIEW), _approve,
             ApproveForm,
             explanation="Validates the participant again, creates its OAuth client, grants registry.read and "
                         "shows the client secret once. You approve exactly what is listed below (its digest is "
                         "recorded in the audit log); if it changes before you confirm, the approval is refused."),
    Workflow("reject", "Reject", "onboard_participant", (Status.APPLIED, Status.UNDER_REVIEW),
             lambda p, data, user: services.participant_reject(participant=p, reason=data["reason"],
                                                               acting_user=user),
             ReasonForm, danger=True),
    Workflow("rotate-secret", "Rotate client secret", "rotate_participant_secret",
             (Status.APPROVED, Status.SUSPENDED),
             lambda p, data, user: services.participant_rotate_secret(
                 participant=p, grace_seconds=data["grace_seconds"], revoke_tokens=data["revoke_tokens"],
                 force=data["force"], acting_user=user),
             RotateSecretForm, credentials_title="New client secret",
             explanation="A new secret is shown once. The old one stops working at once unless you set a grace "
                         "period. A rotation within a minute of the last one, or while its grace period runs, "
                         "is refused unless you tick “Force”: it would replace a secret just handed out."),
    Workflow("revoke-tokens", "Revoke all tokens now", "rotate_participant_secret",
             (Status.APPROVED, Status.SUSPENDED),
             lambda p, data, user: services.participant_revoke_tokens(participant=p, reason=data["reason"],
                                                                      acting_user=user),
             ReasonForm, danger=True,
             explanation="Every token issued before now is refused by this service at once and, within "
                         "STATUS_MAX_AGE, by every provider. The client keeps working and may obtain new "
                         "tokens."),
    Workflow("add-key", "Add key", "manage_participant_keys", LIVE,
             lambda p, data, user: services.public_key_add(participant=p, key_material=data["public_key"],
                                                           kid=data.get("kid") or None, acting_user=user),
             AddKeyForm),
    Workflow("add-endpoint", "Add endpoint", "manage_participant_keys", LIVE,
             lambda p, data, user: services.endpoint_add(participant=p, url=data["url"], acting_user=user),
             AddEndpointForm),
    Workflow("grant-access", "Grant access", "manage_resource_mappings", LIVE, _grant, GrantMappingForm,
             explanation="The scopes are added to those the mapping holds, unless you tick “Replace”.",
             describe=_granted),
    Workflow("suspend", "Suspend", "suspend_participant", (Status.APPROVED,),
             lambda p, data, user: services.participant_suspend(participant=p, reason=data["reason"],
                                                                acting_user=user),
             ReasonForm, danger=True,
             explanation="Its client can no longer obtain tokens and every token it holds becomes inactive at "
                         "once."),
    Workflow("reinstate", "Reinstate", "suspend_participant", (Status.SUSPENDED,),
             lambda p, data, user: services.participant_reinstate(participant=p, acting_user=user)),
    Workflow("offboard", "Offboard", "offboard_participant", LIVE,
             lambda p, data, user: services.participant_offboard(participant=p, reason=data["reason"],
                                                                 acting_user=user),
             OffboardForm, danger=True, shows_removals=True,
             explanation="Offboarding is final. The participant's status becomes OFFBOARDED; its organisation and "
                         "audit history stay.",
             available=lambda p: not _four_eyes_on()),
    # Four-eyes offboarding (AUTHSERVICE["FOUR_EYES"]): one operator requests, another confirms.
    Workflow("request-offboard", "Request offboarding", "offboard_participant", LIVE,
             lambda p, data, user: services.participant_offboard_request(participant=p, reason=data["reason"],
                                                                         acting_user=user),
             ReasonForm, danger=True, shows_removals=True,
             explanation="Nothing is removed yet: another operator must confirm the offboarding. Offboarding is "
                         "final once confirmed.",
             available=lambda p: _four_eyes_on() and not p.offboarding_requested),
    Workflow("confirm-offboard", "Confirm offboarding", "offboard_participant", LIVE,
             lambda p, data, user: services.participant_offboard_confirm(participant=p, acting_user=user),
             ConfirmNameForm, danger=True, shows_removals=True,
             explanation="Offboarding is final. The participant's status becomes OFFBOARDED; its organisation and "
                         "audit history stay. The operator who requested it cannot confirm it.",
             available=lambda p: p.offboarding_requested),
    Workflow("cancel-offboard", "Withdraw offboarding request", "offboard_participant", LIVE,
             lambda p, data, user: services.participant_offboard_cancel(participant=p, acting_user=user),
             available=lambda p: p.offboarding_requested),
]
WORKFLOWS_BY_SLUG = {workflow.slug: workflow for workflow in WORKFLOWS}
# The steps four-eyes reserves for another operator than the one who recorded, reviewed
# or requested (registry.four_eyes).
FOUR_EYES_STEPS = {"approve", "confirm-offboard"}


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


class OccurredBetweenFilter(admin.ListFilter):
    """Audit events from one day to another, inclusive (UTC dates, ``YYYY-MM-DD``)."""

    title = "date (UTC)"
    template = "registry/admin/date_range_filter.html"
    FROM, TO = "occurred_from", "occurred_to"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.values = {}
        for name in (self.FROM, self.TO):
            if name in params:
                value = params.pop(name)
                self.values[name] = (value[-1] if isinstance(value, list) else value).strip()
        self.bounds = {name: self._parse(value) for name, value in self.values.items() if value}

    @staticmethod
    def _parse(value: str) -> datetime:
        try:
            day = parse_date(value) if len(value) == 10 else None
        except ValueError:  # well formed, but no such day
            day = None
        if day is None:
            raise IncorrectLookupParameters(f"{value!r} is not a date (YYYY-MM-DD).")
        return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.FROM, self.TO]

    def queryset(self, request, queryset):
        if self.FROM in self.bounds:
            queryset = queryset.filter(occurred_at__gte=self.bounds[self.FROM])
        if self.TO in self.bounds:
            queryset = queryset.filter(occurred_at__lt=self.bounds[self.TO] + timedelta(days=1))
        return queryset

    def choices(self, changelist):
        keep = [(name, value) for name, value in changelist.get_filters_params().items()
                if name not in (self.FROM, self.TO)]
        yield {
            "from": self.values.get(self.FROM, ""),
            "to": self.values.get(self.TO, ""),
            "hidden": [(name, item) for name, values in keep
                       for item in (values if isinstance(values, list) else [values])],
            "search": changelist.query,
            "clear_url": changelist.get_query_string(remove=[self.FROM, self.TO]),
            "active": bool(self.bounds),
        }


CSV_COLUMNS = ["sequence", "occurred_at", "action", "actor", "participant_id", "organisation", "before", "after",
               "key_id", "prev_hash", "hash"]
# The audit records no secret; should a future event carry one by mistake, the export drops it.
SECRET_KEYS = {"client_secret", "secret", "password", "private_key"}


def _redacted(data: dict) -> dict:
    return {key: "[redacted]" if key.lower() in SECRET_KEYS else value for key, value in data.items()}


def _csv_cell(value) -> str:
    """Text a spreadsheet shows as text: a leading =, +, - or @ would start a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def audit_csv_rows(queryset) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in queryset.iterator(chunk_size=2000):
        participant_id = event.participant.participant_id if event.participant_id else ""
        yield writer.writerow([_csv_cell(value) for value in (
            event.sequence, event.occurred_at.isoformat(), event.action, event.actor_label, participant_id,
            event.organisation.legal_name if event.organisation_id else "",
            json.dumps(_redacted(event.before), sort_keys=True, default=str),
            json.dumps(_redacted(event.after), sort_keys=True, default=str),
            event.key_id, event.prev_hash, event.hash)])


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
