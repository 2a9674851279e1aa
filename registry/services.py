"""Every change to the registry: one function per workflow, one transaction each,
one audit event written inside that transaction. The admin, the management
commands, the API and the tests all come through here; nothing else writes models.

Functions take keyword-only arguments and an explicit ``acting_user`` (``None``
for the system, a ``registry.audit.ProcessActor`` for a person without an account,
such as the operating-system user running a command), validate everything before writing, and raise
``django.core.exceptions.ValidationError`` with a readable message on refusal.

Side effects, each once and in this order (the lock order every writer keeps, so
none can deadlock another): lock the participant rows; change them; mark stale the
cached answers and client records showing what changed, and only those
(``registry.invalidation``); append the audit event, which locks the chain head.
"""

import difflib
import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from authservice import not_before
from authservice.conf import authservice_settings
from authservice.grants import is_registry_scope
from authservice.services import (
    client_create,
    client_deactivate,
    client_delete,
    client_reactivate,
    client_revoke_tokens,
    client_rotate_secret,
)
from registry.audit import actor_user, record_event
from registry.four_eyes import PENDING, approval_content, content_digest, is_maker
from registry.invalidation import (
    grants_changed,
    lock_participants_of,
    organisation_changed,
    participant_changed,
)
from registry.key_material import parse_public_key
from registry.models import (
    SCOPE_TOKEN,
    TRANSITIONS,
    AuditAction,
    Endpoint,
    KeyStatus,
    Organisation,
    Participant,
    PublicKey,
    ResourceMapping,
    Role,
    Scope,
    Status,
)

MAX_SCOPES = 32


class FourEyesRequired(ValidationError):
    """Refused because a second operator must act (``AUTHSERVICE["FOUR_EYES"]``)."""


def _four_eyes(four_eyes: bool | None) -> bool:
    return authservice_settings.FOUR_EYES if four_eyes is None else four_eyes


# --- Validation helpers -------------------------------------------------------------------

def normalise_endpoint_url(url: str) -> str:
    """Validate an API base URL and return its normal form (https unless allowed)."""
    url = (url or "").strip()
    if not url:
        raise ValidationError("An API base URL is required.")
    allowed = ["https", "http"] if authservice_settings.REGISTRY_ALLOW_HTTP_ENDPOINTS else ["https"]
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError as exc:
        raise ValidationError(f"{url!r} is not a valid URL.") from exc
    parts = urlsplit(url)
    if parts.scheme.lower() not in allowed:
        raise ValidationError(f"API base URLs must use https ({url!r}); for local development only, "
                              f"AUTHSERVICE_ALLOW_HTTP_ENDPOINTS=1 accepts http.")
    if parts.username or parts.password:
        raise ValidationError("API base URLs must not carry credentials.")
    if parts.query or parts.fragment:
        raise ValidationError("API base URLs must not carry a query or fragment.")
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    default_port = {"https": 443, "http": 80}[scheme]
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    if ":" in host:  # IPv6 literal
        netloc = f"[{host}]" if port in (None, default_port) else f"[{host}]:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def parse_scopes(scopes: str | list[str]) -> list[str]:
    items = scopes.split() if isinstance(scopes, str) else [s.strip() for s in scopes]
    items = [s for s in items if s]
    if not items:
        raise ValidationError("At least one scope is required.")
    if len(items) > MAX_SCOPES:
        raise ValidationError(f"At most {MAX_SCOPES} scopes per mapping.")
    for scope in items:
        if not SCOPE_TOKEN.match(scope):
            raise ValidationError(f"{scope!r} is not a valid scope (RFC 6749 scope token, at most 64 characters).")
    return sorted(set(items))


def _transition(participant: Participant, target: str) -> None:
    if target not in TRANSITIONS[participant.status]:
        raise ValidationError(
            f"A participant that is {participant.get_status_display().lower()} cannot become "
            f"{Status(target).label.lower()}."
        )


def _locked(participant: Participant) -> Participant:
    """Re-read the participant under a row lock: two admins cannot act on stale state.

    Related rows are loaded after the lock, not joined into it: PostgreSQL re-checks
    only the locked row when a lock wait ends, so joined columns could be stale.
    """
    return Participant.objects.select_for_update().get(pk=participant.pk)


def _snapshot(participant: Participant) -> dict:
    return {
        "status": participant.status,
        "role": participant.role,
        "participant_id": str(participant.participant_id),
        "client_id": participant.client.client_id if participant.client_id else None,
    }


def _active_keys(participant: Participant):
    now = timezone.now()
    return participant.keys.filter(status=KeyStatus.ACTIVE).exclude(not_after__lt=now)


def _make_key(participant: Participant, material: str, kid: str | None) -> PublicKey:
    parsed = parse_public_key(material, kid=kid)
    if PublicKey.objects.filter(thumbprint=parsed.thumbprint, status=KeyStatus.ACTIVE).exists():
        raise ValidationError("This key is already registered.")
    if participant.pk and participant.keys.filter(kid=parsed.kid, status=KeyStatus.ACTIVE).exists():
        raise ValidationError(f"This participant already has an active key with kid {parsed.kid!r}.")
    return PublicKey(
        participant=participant, kid=parsed.kid, thumbprint=parsed.thumbprint, alg=parsed.alg,
        kty=parsed.kty, source_format=parsed.source_format, public_jwk=parsed.public_jwk,
        certificate_pem=parsed.certificate_pem, not_before=parsed.not_before, not_after=parsed.not_after,
    )


def _add_maker(participant: Participant, acting_user) -> None:
    """Four-eyes over content: who changes a pending application becomes one of its
    makers, and so may not approve it."""
    user = actor_user(acting_user)
    if user is None or participant.status not in PENDING or is_maker(participant, user):
        return
    participant.makers = [*(participant.makers or []), {"id": user.pk, "username": user.get_username()}]
    participant.save(update_fields=["makers"])


def _save(instance) -> None:
    """full_clean then save; a race on a unique constraint becomes a ValidationError."""
    instance.full_clean()
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        raise ValidationError(f"This {instance._meta.verbose_name} conflicts with an existing one.") from exc


# --- Organisations and applications -----------------------------------------------------------

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


@dataclass(frozen=True)
class Credentials:
    """A client secret on its one trip to the administrator. Never stored or logged."""

    participant: Participant
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"Credentials(client_id={self.client_id!r}, client_secret=***)"


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


def _jwk_text(key: PublicKey) -> str:
    public = {k: v for k, v in key.public_jwk.items() if k != "x5c"}
    return json.dumps(public)


def _required_reason(reason: str, doing: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(f"A reason is required to {doing}.")
    return reason


def _set_status(participant: Participant, *, status: str, reason: str, action: str, acting_user,
                before: dict, details: dict | None = None) -> Participant:
    """Write a lifecycle transition the caller has checked (and whose cached answers it
    has marked stale), then its audit event."""
    participant.status, participant.status_changed_at = status, timezone.now()
    participant.status_reason = reason
    participant.save(update_fields=["status", "status_changed_at", "status_reason", "updated_at"])
    after = {**_snapshot(participant), **({"reason": reason} if reason else {}), **(details or {})}
    record_event(action=action, acting_user=acting_user, participant=participant, before=before, after=after)
    return participant


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
def participant_suspend(*, participant: Participant, reason: str, acting_user) -> Participant:
    """The client can no longer get tokens, and every token it holds is refused, also
    after a reinstatement (its tokens-not-before moves to now)."""
    reason = _required_reason(reason, "suspend a participant")
    participant = _locked(participant)
    before = _snapshot(participant)
    _transition(participant, Status.SUSPENDED)
    # Also the grants of clients mapped to it; first, as it locks their rows and its own in order.
    participant_changed(participant, as_provider=True)
    cutoff = client_deactivate(client=participant.client)
    return _set_status(participant, status=Status.SUSPENDED, reason=reason,
                       action=AuditAction.PARTICIPANT_SUSPENDED, acting_user=acting_user, before=before,
                       details={"tokens_not_before": not_before.as_text(cutoff)})


@transaction.atomic
def participant_reinstate(*, participant: Participant, acting_user) -> Participant:
    participant = _locked(participant)
    before = _snapshot(participant)
    if participant.status != Status.SUSPENDED:
        raise ValidationError("Only a suspended participant can be reinstated.")
    if not _active_keys(participant).exists():
        raise ValidationError("The participant has no valid, active public key; add one before reinstating.")
    participant_changed(participant, as_provider=True)
    cutoff = client_reactivate(client=participant.client)
    return _set_status(participant, status=Status.APPROVED, reason="", action=AuditAction.PARTICIPANT_REINSTATED,
                       acting_user=acting_user, before=before,
                       details={"tokens_not_before": not_before.as_text(cutoff)})


@transaction.atomic
def participant_offboard(*, participant: Participant, reason: str, acting_user,
                         four_eyes: bool | None = None) -> dict:
    """The four offboarding steps, all or nothing. Returns what was removed.

    With four-eyes (``four_eyes``, by default ``AUTHSERVICE["FOUR_EYES"]``) one operator
    cannot offboard alone: ``participant_offboard_request`` then, by another operator,
    ``participant_offboard_confirm``. Scripts (the ``offboard`` command) pass False.
    """
    reason = _required_reason(reason, "offboard a participant")
    if _four_eyes(four_eyes):
        raise FourEyesRequired("Four-eyes offboarding: request the offboarding; another operator confirms it.")
    participant = _locked(participant)
    return _offboard(participant, reason=reason, acting_user=acting_user)


def _offboard(participant: Participant, *, reason: str, acting_user, details: dict | None = None) -> dict:
    """Offboard a participant the caller has locked."""
    from registry.selectors import offboarding_plan

    before = _snapshot(participant)
    _transition(participant, Status.OFFBOARDED)
    plan = offboarding_plan(participant)
    participant_changed(participant, as_provider=True)  # before its client and mappings go
    participant.keys.filter(status=KeyStatus.ACTIVE).update(status=KeyStatus.REVOKED, revoked_at=timezone.now())
    participant.endpoints.all().delete()
    ResourceMapping.objects.filter(Q(client=participant) | Q(provider=participant)).delete()
    if participant.client is not None:
        client_delete(client=participant.client)
        participant.client = None
    _clear_offboarding_request(participant)
    _set_status(participant, status=Status.OFFBOARDED, reason=reason, action=AuditAction.PARTICIPANT_OFFBOARDED,
                acting_user=acting_user, before=before, details={"removed": plan, **(details or {})})
    return plan


def _clear_offboarding_request(participant: Participant) -> None:
    participant.offboarding_requested_by = participant.offboarding_requested_at = None
    participant.offboarding_reason = ""
    participant.save(update_fields=["offboarding_requested_by", "offboarding_requested_at", "offboarding_reason"])


def _requester_label(participant: Participant) -> str:
    user = participant.offboarding_requested_by
    return user.get_username() if user is not None else "system"


@transaction.atomic
def participant_offboard_request(*, participant: Participant, reason: str, acting_user) -> Participant:
    """First of the two four-eyes offboarding steps: record who asks and why. Nothing
    is removed until another operator confirms (``participant_offboard_confirm``)."""
    reason = _required_reason(reason, "request offboarding")
    participant = _locked(participant)
    _transition(participant, Status.OFFBOARDED)  # refuses what cannot be offboarded, before anything is written
    if participant.offboarding_requested:
        raise ValidationError(f"Offboarding was already requested by {_requester_label(participant)}; "
                              f"confirm or withdraw that request.")
    participant.offboarding_requested_by = actor_user(acting_user)
    participant.offboarding_requested_at = timezone.now()
    participant.offboarding_reason = reason
    participant.save(update_fields=["offboarding_requested_by", "offboarding_requested_at", "offboarding_reason"])
    record_event(action=AuditAction.OFFBOARDING_REQUESTED, acting_user=acting_user, participant=participant,
                 after={"status": participant.status, "reason": reason,
                        "requested_at": participant.offboarding_requested_at.isoformat()})
    return participant


@transaction.atomic
def participant_offboard_confirm(*, participant: Participant, acting_user, four_eyes: bool | None = None) -> dict:
    """Second step: another operator than the requester offboards, for the requested
    reason. Returns what was removed."""
    participant = _locked(participant)
    if not participant.offboarding_requested:
        raise ValidationError("No offboarding has been requested for this participant.")
    user = actor_user(acting_user)
    if _four_eyes(four_eyes) and user is not None and participant.offboarding_requested_by_id == user.pk:
        raise FourEyesRequired("Four-eyes offboarding: you requested this offboarding, so another operator "
                               "must confirm it.")
    requested = {"requested_by": _requester_label(participant),
                 "requested_at": participant.offboarding_requested_at.isoformat()}
    return _offboard(participant, reason=participant.offboarding_reason, acting_user=acting_user,
                     details={"offboarding_request": requested})


@transaction.atomic
def participant_offboard_cancel(*, participant: Participant, acting_user) -> Participant:
    """Withdraw a pending offboarding request (the requester or another operator)."""
    participant = _locked(participant)
    if not participant.offboarding_requested:
        raise ValidationError("No offboarding has been requested for this participant.")
    before = {"reason": participant.offboarding_reason, "requested_by": _requester_label(participant),
              "requested_at": participant.offboarding_requested_at.isoformat()}
    _clear_offboarding_request(participant)
    record_event(action=AuditAction.OFFBOARDING_CANCELLED, acting_user=acting_user, participant=participant,
                 before=before)
    return participant


def _require_client(participant: Participant, doing: str) -> None:
    if participant.status not in (Status.APPROVED, Status.SUSPENDED) or participant.client is None:
        raise ValidationError(f"Only an approved or suspended participant has a client {doing}.")


@transaction.atomic
def participant_rotate_secret(*, participant: Participant, acting_user, grace_seconds: int = 0,
                              revoke_tokens: bool = False, force: bool = False) -> Credentials:
    """Issue a new client secret; with ``revoke_tokens`` every token issued before it
    is refused too (the old secret leaked).

    Of two rotations at the same moment (two administrators, a double submission)
    exactly one issues a secret; the other is refused, as is any rotation within a
    minute of the last or while its grace period runs, unless ``force`` (see
    ``authservice.services.client_rotate_secret``)."""
    participant = _locked(participant)
    _require_client(participant, "secret to rotate")
    secret = client_rotate_secret(client=participant.client, grace_seconds=grace_seconds,
                                  revoke_tokens=revoke_tokens, force=force)
    if revoke_tokens:
        participant_changed(participant)  # the registry shows its tokens-not-before
    record_event(action=AuditAction.CLIENT_SECRET_ROTATED, acting_user=acting_user, participant=participant,
                 after={"client_id": participant.client.client_id, "grace_seconds": grace_seconds,
                        "revoke_tokens": revoke_tokens, "force": force})
    return Credentials(participant=participant, client_id=participant.client.client_id, client_secret=secret)


@transaction.atomic
def participant_revoke_tokens(*, participant: Participant, reason: str, acting_user) -> datetime:
    """End every token the participant's client holds: those issued before now are
    refused by the service at once and by providers once they revalidate its record.
    The client keeps working. Returns the new tokens-not-before."""
    reason = _required_reason(reason, "revoke a participant's tokens")
    participant = _locked(participant)
    _require_client(participant, "whose tokens can be revoked")
    previous = participant.client.tokens_not_before
    cutoff = client_revoke_tokens(client=participant.client)
    participant_changed(participant)
    record_event(action=AuditAction.TOKENS_REVOKED, acting_user=acting_user, participant=participant,
                 before={"tokens_not_before": not_before.as_text(previous)},
                 after={"tokens_not_before": not_before.as_text(cutoff), "reason": reason})
    return cutoff


@transaction.atomic
def client_auth_lockout_record(*, lockout) -> None:
    """Audit the start of a lockout of failed client authentication: the service's
    ``AUTHSERVICE["LOCKOUT_AUDITOR"]``, called once per lockout (an
    ``authservice.auth_limits.Lockout``). The event names the participant when the
    presented client_id is one's; it records the client_id as presented either way."""
    participant = None
    if lockout.client_id:
        participant = (Participant.objects.select_related("organisation")
                       .filter(client__client_id=lockout.client_id).first())
    record_event(action=AuditAction.CLIENT_AUTH_LOCKOUT, acting_user=None, participant=participant,
                 after={"scope": lockout.kind, "client_id": lockout.client_id, "address": lockout.address,
                        "failures": lockout.failures, "window_seconds": lockout.window_seconds,
                        "locked_until": lockout.locked_until_iso, "endpoint": lockout.endpoint})


# --- Keys and endpoints ------------------------------------------------------------------------

def _require_live(participant: Participant) -> None:
    if participant.status in (Status.OFFBOARDED, Status.REJECTED):
        raise ValidationError(f"The participant is {participant.get_status_display().lower()}.")


@transaction.atomic
def public_key_add(*, participant: Participant, key_material: str, kid: str | None = None,
                   acting_user) -> PublicKey:
    participant = _locked(participant)
    _require_live(participant)
    key = _make_key(participant, key_material, kid)
    _save(key)
    _add_maker(participant, acting_user)
    participant_changed(participant)
    record_event(action=AuditAction.KEY_ADDED, acting_user=acting_user, participant=participant,
                 after={"kid": key.kid, "thumbprint": key.thumbprint, "alg": key.alg,
                        "not_after": key.not_after.isoformat() if key.not_after else None})
    return key


@transaction.atomic
def public_key_revoke(*, key: PublicKey, acting_user) -> PublicKey:
    participant = _locked(key.participant)
    key = PublicKey.objects.select_for_update().get(pk=key.pk)
    if key.status != KeyStatus.ACTIVE:
        raise ValidationError("This key is already revoked.")
    if participant.status in (Status.APPROVED, Status.SUSPENDED) and not _active_keys(participant).exclude(
            pk=key.pk).exists():
        raise ValidationError("An approved participant must keep at least one active key; add the new key "
                              "before revoking the last one.")
    key.status, key.revoked_at = KeyStatus.REVOKED, timezone.now()
    key.save(update_fields=["status", "revoked_at"])
    _add_maker(participant, acting_user)
    participant_changed(participant)
    record_event(action=AuditAction.KEY_REVOKED, acting_user=acting_user, participant=participant,
                 before={"kid": key.kid, "status": KeyStatus.ACTIVE}, after={"kid": key.kid, "status": key.status})
    return key


@transaction.atomic
def endpoint_add(*, participant: Participant, url: str, acting_user) -> Endpoint:
    participant = _locked(participant)
    _require_live(participant)
    normalised = normalise_endpoint_url(url)
    if participant.endpoints.filter(url=normalised).exists():
        raise ValidationError(f"{normalised} is already registered for this participant.")
    endpoint = Endpoint(participant=participant, url=normalised)
    _save(endpoint)
    _add_maker(participant, acting_user)
    participant_changed(participant)
    record_event(action=AuditAction.ENDPOINT_ADDED, acting_user=acting_user, participant=participant,
                 after={"url": normalised})
    return endpoint


@transaction.atomic
def endpoint_remove(*, endpoint: Endpoint, acting_user) -> None:
    participant = _locked(endpoint.participant)
    if participant.status in (Status.APPROVED, Status.SUSPENDED) and participant.endpoints.count() <= 1:
        raise ValidationError("An approved participant must keep at least one API base URL.")
    url = endpoint.url
    endpoint.delete()
    _add_maker(participant, acting_user)
    participant_changed(participant)
    record_event(action=AuditAction.ENDPOINT_REMOVED, acting_user=acting_user, participant=participant,
                 before={"url": url})


# --- Resource mappings ---------------------------------------------------------------------------

def _require_catalogued(scope_list: list[str]) -> None:
    """Refuse any scope the catalogue does not hold, naming the closest one it does."""
    known = set(Scope.objects.filter(name__in=scope_list).values_list("name", flat=True))
    unknown = [scope for scope in scope_list if scope not in known]
    if not unknown:
        return
    catalogue = list(Scope.objects.values_list("name", flat=True))
    described = []
    for scope in unknown:
        closest = difflib.get_close_matches(scope, catalogue, n=1, cutoff=0.6)
        described.append(f"{scope!r}" + (f" (did you mean {closest[0]!r}?)" if closest else ""))
    raise ValidationError(f"Unknown scope{'s' if len(unknown) > 1 else ''} {', '.join(described)}: grants name "
                          f"scopes of the catalogue (define one with manage.py define_scope or the admin).")


@transaction.atomic
def mapping_grant(*, client: Participant, provider: Participant | None, scopes: str | list[str],
                  acting_user, replace: bool = False, at_registry: bool = False,
                  confirm_unapproved_provider: bool = False) -> ResourceMapping:
    """Allow ``client`` to use ``scopes`` at ``provider``, or at the registry itself when
    ``provider`` is None and ``at_registry`` says so (a missing provider is never read as
    the registry).

    Every scope must be in the catalogue (``Scope``). The registry's scopes
    (``registry.*``) are granted at the registry only, and nothing else is. A provider
    that is not APPROVED needs ``confirm_unapproved_provider`` (the grant takes effect
    when it is approved). The scopes are added to those of an existing mapping; with
    ``replace`` they replace them. A no-op change writes nothing. The returned mapping's
    ``scopes_before`` holds its scopes before the call ("" for a new mapping).
    """
    scope_list = parse_scopes(scopes)
    if provider is None and not at_registry:
        raise ValidationError("Choose the provider the client may call: a grant needs a target (a grant at the "
                              "registry itself is asked for as such).")
    if provider is not None and at_registry:
        raise ValidationError("A grant is at a provider or at the registry, not both.")
    if provider is not None and provider.pk == client.pk:
        raise ValidationError("A participant cannot be mapped to itself.")
    misplaced = [scope for scope in scope_list if is_registry_scope(scope) != at_registry]
    if misplaced and at_registry:
        raise ValidationError(f"Only the registry's scopes (registry.*) are granted at the registry; "
                              f"{misplaced[0]} is a provider's scope: grant it at the provider.")
    if misplaced:
        raise ValidationError(f"{misplaced[0]} is the registry's scope: grant it at the registry, not at a provider.")
    _require_catalogued(scope_list)
    # Lock both ends in primary-key order: A→B and B→A granted at once cannot deadlock.
    ends = sorted([p for p in (client, provider) if p is not None], key=lambda p: p.pk)
    locked = {p.pk: _locked(p) for p in ends}
    client = locked[client.pk]
    _require_live(client)
    unapproved = False
    if provider is not None:
        provider = locked[provider.pk]
        _require_live(provider)
        unapproved = provider.status != Status.APPROVED
        if unapproved and not confirm_unapproved_provider:
            raise ValidationError(f"The provider {provider} is {provider.get_status_display().lower()}, not approved: "
                                  "confirm the grant to a provider that is not approved (it takes effect when the "
                                  "provider is approved).")
    mapping = ResourceMapping.objects.select_for_update().filter(client=client, provider=provider).first()
    scopes_before = mapping.scopes if mapping else ""
    if not replace:
        scope_list = parse_scopes(sorted(set(scopes_before.split()) | set(scope_list)))
    scope_text = " ".join(scope_list)
    if mapping is not None and mapping.scopes == scope_text:
        mapping.scopes_before = scopes_before
        return mapping
    if mapping is None:
        mapping = ResourceMapping(client=client, provider=provider, scopes=scope_text)
    mapping.scopes = scope_text
    _save(mapping)
    grants_changed(client)
    record_event(action=AuditAction.MAPPING_GRANTED, acting_user=acting_user, participant=client,
                 before={"scopes": scopes_before} if scopes_before else {},
                 after={"provider": _provider_label(provider), "audience": mapping.audience, "scopes": scope_text,
                        **({"replaced": True} if replace and scopes_before else {}),
                        **({"confirmed_unapproved_provider": True} if unapproved else {})})
    mapping.scopes_before = scopes_before
    return mapping


@transaction.atomic
def mapping_remove(*, mapping: ResourceMapping, acting_user) -> None:
    mapping = ResourceMapping.objects.select_for_update().get(pk=mapping.pk)
    details = {"provider": _provider_label(mapping.provider), "audience": mapping.audience,
               "scopes": mapping.scopes}
    client = mapping.client
    mapping.delete()
    grants_changed(client)
    record_event(action=AuditAction.MAPPING_REMOVED, acting_user=acting_user, participant=client,
                 before=details)


def _provider_label(provider: Participant | None) -> str:
    return "registry" if provider is None else str(provider.participant_id)


# --- Composite workflows ----------------------------------------------------------------------------

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


# --- Scope catalogue -------------------------------------------------------------------------

@transaction.atomic
def scope_define(*, name: str, description: str | None = None, provider_roles: list[str] | None = None,
                 acting_user) -> tuple[Scope, str]:
    """Create a catalogue scope, or update the description and provider roles given
    (None: unchanged). Idempotent: a no-op writes nothing. Returns the scope and what
    happened: "created", "updated" or "unchanged"."""
    name = (name or "").strip()
    if not SCOPE_TOKEN.match(name):
        raise ValidationError(f"{name!r} is not a valid scope (RFC 6749 scope token, at most 64 characters).")
    if provider_roles is not None:
        bad = [role for role in provider_roles if role not in Role.values]
        if bad:
            raise ValidationError(f"{bad[0]!r} is not a role; choose from {', '.join(Role.values)}.")
        provider_roles = sorted(set(provider_roles))
    scope = Scope.objects.select_for_update().filter(name=name).first()
    if scope is None:
        scope = Scope(name=name, description=(description or "").strip(), provider_roles=provider_roles or [])
        _save(scope)
        record_event(action=AuditAction.SCOPE_DEFINED, acting_user=acting_user,
                     after={"name": name, "description": scope.description, "provider_roles": scope.provider_roles})
        return scope, "created"
    changes = {}
    if description is not None and description.strip() != scope.description:
        changes["description"] = description.strip()
    if provider_roles is not None and provider_roles != scope.provider_roles:
        changes["provider_roles"] = provider_roles
    if not changes:
        return scope, "unchanged"
    before = {field: getattr(scope, field) for field in changes}
    for field, value in changes.items():
        setattr(scope, field, value)
    _save(scope)
    record_event(action=AuditAction.SCOPE_UPDATED, acting_user=acting_user, before={"name": name, **before},
                 after={"name": name, **changes})
    return scope, "updated"
