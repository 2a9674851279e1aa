"""The buttons on the participant page: each workflow's permission, the statuses it applies
in, its form, and the ``registry.services`` call it makes."""

from collections.abc import Callable
from dataclasses import dataclass

from authservice.conf import authservice_settings
from registry import services
from registry.admin.forms import (
    AddEndpointForm,
    AddKeyForm,
    ApproveForm,
    ConfirmForm,
    ConfirmNameForm,
    GrantMappingForm,
    OffboardForm,
    ReasonForm,
    RotateSecretForm,
)
from registry.models import Participant, Status


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
