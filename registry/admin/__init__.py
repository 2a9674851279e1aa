"""The registry administrators' back office, on the Django admin.

The admin is thin: every page that changes something calls a ``registry.services``
function, reports its ValidationError as a readable error, and never writes a model
itself. Pages that remove something show exactly what will go before acting, and
client secrets are rendered once into a no-store page, never stored or logged.

Permissions (see the README): view_* to see; onboard_participant for onboarding,
review, approval and rejection; manage_participant_keys for keys and endpoints;
manage_resource_mappings; rotate_participant_secret; suspend_participant; and
offboard_participant, which only superusers hold unless granted explicitly.

Django's admin autodiscovery imports this package, which imports every module that
registers a ModelAdmin. One module per page or part:

- ``organisations``, ``participants``, ``audit``, ``scopes``: the ModelAdmins;
- ``workflows``: the buttons on the participant page and the service call each makes;
- ``inlines``: the participant page's endpoints, keys and mappings;
- ``credentials``: the one-time secret hand-off and the participant's configuration file;
- ``filters`` and ``export``: the audit log's date filter and CSV export;
- ``forms``: the workflow pages' forms; ``base``: what every page shares;
- ``groups``: the admin groups and their permissions.

``registry.admin_site`` (the admin site and its AppConfig) stays outside the package:
``INSTALLED_APPS`` imports it before the models load, and this package imports them.
Every name the single module held stays importable from here (private ones as ``name as name``).
"""

from registry.admin.audit import AuditEventAdmin, audit_changes
from registry.admin.audit import _shown as _shown
from registry.admin.base import SHORT_ID_CHARS, ReadOnlyInline, SeeOther, ServiceBackedAdmin
from registry.admin.base import _breakable_time as _breakable_time
from registry.admin.base import _short_with_copy as _short_with_copy
from registry.admin.credentials import _configuration_download as _configuration_download
from registry.admin.credentials import credentials_redirect, participant_configuration
from registry.admin.export import CSV_COLUMNS, SECRET_KEYS, audit_csv_rows
from registry.admin.export import _csv_cell as _csv_cell
from registry.admin.export import _Echo as _Echo
from registry.admin.export import _redacted as _redacted
from registry.admin.filters import OccurredBetweenFilter
from registry.admin.forms import (
    AddEndpointForm,
    AddKeyForm,
    ApproveForm,
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
from registry.admin.forms import _forget_private_key as _forget_private_key
from registry.admin.forms import _is_private_key_material as _is_private_key_material
from registry.admin.inlines import EndpointInline, MappingAsClientInline, MappingAsProviderInline, PublicKeyInline
from registry.admin.organisations import OrganisationAdmin
from registry.admin.participants import EMPTY_PLAN, ParticipantAdmin, last_activity
from registry.admin.scopes import ScopeAdmin
from registry.admin.workflows import FOUR_EYES_STEPS, LIVE, WORKFLOWS, WORKFLOWS_BY_SLUG, Workflow
from registry.admin.workflows import _approve as _approve
from registry.admin.workflows import _four_eyes_on as _four_eyes_on
from registry.admin.workflows import _grant as _grant
from registry.admin.workflows import _granted as _granted

__all__ = [
    "CSV_COLUMNS",
    "EMPTY_PLAN",
    "FOUR_EYES_STEPS",
    "LIVE",
    "SECRET_KEYS",
    "SHORT_ID_CHARS",
    "WORKFLOWS",
    "WORKFLOWS_BY_SLUG",
    "AddEndpointForm",
    "AddKeyForm",
    "ApproveForm",
    "AuditEventAdmin",
    "BulkOffboardForm",
    "ConfirmForm",
    "ConfirmNameForm",
    "EndpointInline",
    "GrantMappingForm",
    "MappingAsClientInline",
    "MappingAsProviderInline",
    "OccurredBetweenFilter",
    "OffboardForm",
    "OnboardForm",
    "OrganisationAdmin",
    "ParticipantAdmin",
    "PublicKeyInline",
    "ReadOnlyInline",
    "ReasonForm",
    "RotateSecretForm",
    "ScopeAdmin",
    "ScopeForm",
    "SeeOther",
    "ServiceBackedAdmin",
    "Workflow",
    "audit_changes",
    "audit_csv_rows",
    "credentials_redirect",
    "last_activity",
    "participant_configuration",
]
