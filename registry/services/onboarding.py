"""Onboarding: an organisation applies for a role, an operator reviews the application
and approves it (creating the OAuth client and showing its secret once) or rejects it;
``participant_onboard`` does it all in one step for automation."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from authservice.clients import client_create
from authservice.conf import authservice_settings
from registry.audit import actor_user, record_event
from registry.four_eyes import approval_content, content_digest, is_maker
from registry.invalidation import participant_changed
from registry.key_material import parse_public_key
from registry.models import AuditAction, Endpoint, Organisation, Participant, ResourceMapping, Role, Status
from registry.services.credentials import Credentials
from registry.services.endpoints import normalise_endpoint_url
from registry.services.keys import _active_keys, _jwk_text, _make_key
from registry.services.lifecycle import (
    FourEyesRequired,
    _add_maker,
    _four_eyes,
    _locked,
    _required_reason,
    _save,
    _set_status,
    _snapshot,
    _transition,
)
from registry.services.organisations import organisation_create


@transaction.atomic
def participant_apply(*, organisation: Organisation, role: str, base_url: str, public_key: str,
                      kid: str | None = None, acting_user) -> Participant:
    """Record an organisation's application for a role, with its API base URL and key."""
    if role not in Role.values:
        raise ValidationError(f"{role!r} is not a role; choose one of {', '.join(Role.values)}.")
    url = normalise_endpoint_url(base_url)
    participant = Participant(organisation=organisation, role=role, status=Status.APPLIED,
                              recorded_by=actor_user(acting_user))
    key = _make_key(participant, public_key, kid)
    participant.full_clean(exclude=["client"])
    _save(participant)
    endpoint = Endpoint(participant=participant, url=url)
    _save(endpoint)
    key.participant = participant
    _save(key)
    _add_maker(participant, acting_user)
    participant_changed(participant)
    record_event(action=AuditAction.PARTICIPANT_APPLIED, acting_user=acting_user, participant=participant,
                 after={**_snapshot(participant), "base_url": url, "key": {"kid": key.kid,
                                                                          "thumbprint": key.thumbprint}})
    return participant


@transaction.atomic
def participant_start_review(*, participant: Participant, acting_user) -> Participant:
    """Mark the application under review; the reviewer may then not approve it (four-eyes)."""
    participant = _locked(participant)
    before = _snapshot(participant)
    _transition(participant, Status.UNDER_REVIEW)
    participant.reviewed_by = actor_user(acting_user)
    participant.save(update_fields=["reviewed_by"])
    participant_changed(participant)
    return _set_status(participant, status=Status.UNDER_REVIEW, reason="",
                       action=AuditAction.PARTICIPANT_UNDER_REVIEW, acting_user=acting_user, before=before)


@transaction.atomic
def participant_approve(*, participant: Participant, acting_user, four_eyes: bool | None = None,
                        expected_digest: str | None = None) -> Credentials:
    """Validate again, create the OAuth client, grant registry.read, set APPROVED.

    With four-eyes (``four_eyes``, by default ``AUTHSERVICE["FOUR_EYES"]``) none of the
    application's makers (who recorded it or changed its endpoints, keys or organisation
    while it was pending) and not who started its review may approve it. With
    ``expected_digest`` (the approve page's ``registry.four_eyes.approval_digest``) an
    application changed since is refused. The audit event records the digest of what was
    approved. The secret is returned once; only its hash is kept.
    """
    participant = _locked(participant)
    before = _snapshot(participant)
    _transition(participant, Status.APPROVED)
    user = actor_user(acting_user)
    if _four_eyes(four_eyes) and user is not None:
        doing = ("recorded" if participant.recorded_by_id == user.pk
                 else "changed" if is_maker(participant, user)
                 else "reviewed" if participant.reviewed_by_id == user.pk else "")
        if doing:
            raise FourEyesRequired(f"Four-eyes approval: you {doing} this application, so another operator "
                                   f"must approve it.")
    approved = approval_content(participant)
    digest = content_digest(approved)
    if expected_digest is not None and expected_digest != digest:
        raise ValidationError("The application changed since you opened this page (its digest is now "
                              f"{digest[:12]}…): review what it holds now and approve again.")
    if participant.client_id is not None:
        raise ValidationError("This participant already has an OAuth client.")
    if not participant.endpoints.exists():
        raise ValidationError("An approved participant needs an API base URL.")
    for endpoint in participant.endpoints.all():
        normalise_endpoint_url(endpoint.url)
    if not _active_keys(participant).exists():
        raise ValidationError("An approved participant needs at least one valid, active public key.")
    for key in _active_keys(participant):
        parse_public_key(key.certificate_pem or _jwk_text(key))

    client, secret = client_create(name=f"{participant.organisation.legal_name} / {participant.role}")
    now = timezone.now()
    participant.client = client
    participant.status, participant.status_changed_at = Status.APPROVED, now
    participant.approved_at, participant.approved_by = now, actor_user(acting_user)
    participant.status_reason = ""
    participant.save()
    ResourceMapping.objects.get_or_create(client=participant, provider=None,
                                          defaults={"scopes": authservice_settings.REGISTRY_SCOPE})
    participant_changed(participant)
    record_event(action=AuditAction.PARTICIPANT_APPROVED, acting_user=acting_user, participant=participant,
                 before=before, after={**_snapshot(participant),
                                       "granted": {"registry": authservice_settings.REGISTRY_SCOPE},
                                       "approved": approved, "approved_digest": digest})
    return Credentials(participant=participant, client_id=client.client_id, client_secret=secret)


@transaction.atomic
def participant_reject(*, participant: Participant, reason: str, acting_user) -> Participant:
    reason = _required_reason(reason, "reject an application")
    participant = _locked(participant)
    before = _snapshot(participant)
    _transition(participant, Status.REJECTED)
    participant_changed(participant)
    return _set_status(participant, status=Status.REJECTED, reason=reason, action=AuditAction.PARTICIPANT_REJECTED,
                       acting_user=acting_user, before=before)


@transaction.atomic
def application_submit(*, role: str, base_url: str, public_key: str, kid: str | None = None,
                       organisation: Organisation | None = None, new_organisation_name: str = "",
                       website: str = "", contact_email: str = "", acting_user) -> Participant:
    """Record an application for an existing organisation, or for a new one created with it."""
    if (organisation is None) == (not (new_organisation_name or "").strip()):
        raise ValidationError("Choose an existing organisation or name a new one (not both).")
    if organisation is None:
        organisation = organisation_create(legal_name=new_organisation_name, website=website,
                                           contact_email=contact_email, acting_user=acting_user)
    return participant_apply(organisation=organisation, role=role, base_url=base_url, public_key=public_key,
                             kid=kid, acting_user=acting_user)


@transaction.atomic
def participant_onboard(*, org_name: str, role: str, base_url: str, public_key: str,
                        org_id: str | None = None, acting_user) -> Credentials:
    """For automation: find the organisation (by org_id, else by legal name; created when
    the name is new), apply and approve, in one transaction."""
    if org_id:
        organisation = Organisation.objects.filter(org_id=org_id).first()
        if organisation is None:
            raise ValidationError(f"No organisation has org_id {org_id}.")
    else:
        organisation = Organisation.objects.filter(legal_name=(org_name or "").strip()).first()
    participant = application_submit(organisation=organisation, new_organisation_name="" if organisation else org_name,
                                     role=role, base_url=base_url, public_key=public_key, acting_user=acting_user)
    return participant_approve(participant=participant, acting_user=acting_user, four_eyes=False)
