"""The scope catalogue: the scopes grants may name, defined and described here."""

from django.core.exceptions import ValidationError
from django.db import transaction

from registry.audit import record_event
from registry.models import SCOPE_TOKEN, AuditAction, Role, Scope
from registry.services.lifecycle import _save


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
