"""Resource mappings: which scopes a client may use at a provider, or at the registry
itself; granted from the scope catalogue and removed."""

import difflib

from django.core.exceptions import ValidationError
from django.db import transaction

from authservice.hooks import is_registry_scope
from registry.audit import record_event
from registry.invalidation import grants_changed
from registry.models import SCOPE_TOKEN, AuditAction, Participant, ResourceMapping, Scope, Status
from registry.services.lifecycle import _locked, _require_live, _save

MAX_SCOPES = 32


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
