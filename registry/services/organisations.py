"""Organisations: the legal entities participants belong to, created and changed here."""

from django.core.exceptions import ValidationError
from django.db import transaction

from registry.audit import record_event
from registry.four_eyes import PENDING
from registry.invalidation import lock_participants_of, organisation_changed
from registry.models import AuditAction, Organisation
from registry.services.lifecycle import _add_maker, _save


@transaction.atomic
def organisation_create(*, legal_name: str, website: str = "", contact_email: str = "",
                        contact_phone: str = "", acting_user) -> Organisation:
    organisation = Organisation(legal_name=(legal_name or "").strip(), website=(website or "").strip(),
                                contact_email=(contact_email or "").strip(),
                                contact_phone=(contact_phone or "").strip())
    _save(organisation)
    record_event(action=AuditAction.ORGANISATION_CREATED, acting_user=acting_user, organisation=organisation,
                 after={"legal_name": organisation.legal_name, "org_id": str(organisation.org_id)})
    return organisation


ORGANISATION_FIELDS = ("legal_name", "website", "contact_email", "contact_phone")


@transaction.atomic
def organisation_update(*, organisation: Organisation, acting_user, **changes: str) -> Organisation:
    """Change an organisation's details; a no-op change writes nothing."""
    unknown = set(changes) - set(ORGANISATION_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown organisation fields: {', '.join(sorted(unknown))}.")
    lock_participants_of(organisation)  # before the organisation row: see registry.invalidation
    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    before = {field: getattr(organisation, field) for field in changes}
    after = {field: (value or "").strip() for field, value in changes.items()}
    if before == after:
        return organisation
    for field, value in after.items():
        setattr(organisation, field, value)
    _save(organisation)
    for participant in organisation.participants.filter(status__in=PENDING):
        _add_maker(participant, acting_user)
    organisation_changed(organisation)  # the registry API shows the organisation's details
    record_event(action=AuditAction.ORGANISATION_UPDATED, acting_user=acting_user, organisation=organisation,
                 before=before, after=after)
    return organisation
