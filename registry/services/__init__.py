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

One module per workflow or noun, all importable from here as before:

- ``lifecycle``: the steps every writer shares (row lock, transition, status and audit event, makers);
- ``organisations``: organisations;
- ``onboarding``: apply, review, approve, reject, and onboarding in one step;
- ``suspension``: suspend and reinstate;
- ``offboarding``: offboard, in one step or requested and confirmed (four-eyes);
- ``credentials``: the client secret handed out once, its rotation, token revocation, lockout audit;
- ``keys``: public keys;
- ``endpoints``: API base URLs;
- ``mappings``: resource mappings (grants);
- ``scopes``: the scope catalogue.

The single module's private helpers stay importable from here too (``name as name``).
"""

from registry.services.credentials import (
    Credentials,
    client_auth_lockout_record,
    participant_revoke_tokens,
    participant_rotate_secret,
)
from registry.services.endpoints import endpoint_add, endpoint_remove, normalise_endpoint_url
from registry.services.keys import _active_keys as _active_keys
from registry.services.keys import _jwk_text as _jwk_text
from registry.services.keys import _make_key as _make_key
from registry.services.keys import public_key_add, public_key_revoke
from registry.services.lifecycle import FourEyesRequired
from registry.services.lifecycle import _add_maker as _add_maker
from registry.services.lifecycle import _four_eyes as _four_eyes
from registry.services.lifecycle import _locked as _locked
from registry.services.lifecycle import _require_client as _require_client
from registry.services.lifecycle import _require_live as _require_live
from registry.services.lifecycle import _required_reason as _required_reason
from registry.services.lifecycle import _save as _save
from registry.services.lifecycle import _set_status as _set_status
from registry.services.lifecycle import _snapshot as _snapshot
from registry.services.lifecycle import _transition as _transition
from registry.services.mappings import MAX_SCOPES, mapping_grant, mapping_remove, parse_scopes
from registry.services.mappings import _provider_label as _provider_label
from registry.services.mappings import _require_catalogued as _require_catalogued
from registry.services.offboarding import _clear_offboarding_request as _clear_offboarding_request
from registry.services.offboarding import _offboard as _offboard
from registry.services.offboarding import _requester_label as _requester_label
from registry.services.offboarding import (
    participant_offboard,
    participant_offboard_cancel,
    participant_offboard_confirm,
    participant_offboard_request,
)
from registry.services.onboarding import (
    application_submit,
    participant_apply,
    participant_approve,
    participant_onboard,
    participant_reject,
    participant_start_review,
)
from registry.services.organisations import ORGANISATION_FIELDS, organisation_create, organisation_update
from registry.services.scopes import scope_define
from registry.services.suspension import participant_reinstate, participant_suspend

__all__ = [
    "MAX_SCOPES",
    "ORGANISATION_FIELDS",
    "Credentials",
    "FourEyesRequired",
    "application_submit",
    "client_auth_lockout_record",
    "endpoint_add",
    "endpoint_remove",
    "mapping_grant",
    "mapping_remove",
    "normalise_endpoint_url",
    "organisation_create",
    "organisation_update",
    "parse_scopes",
    "participant_apply",
    "participant_approve",
    "participant_offboard",
    "participant_offboard_cancel",
    "participant_offboard_confirm",
    "participant_offboard_request",
    "participant_onboard",
    "participant_reinstate",
    "participant_reject",
    "participant_revoke_tokens",
    "participant_rotate_secret",
    "participant_start_review",
    "participant_suspend",
    "public_key_add",
    "public_key_revoke",
    "scope_define",
]
