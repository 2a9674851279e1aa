"""A participant's API base URLs: validated and normalised, added and removed."""

from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction

from authservice.conf import authservice_settings
from registry.audit import record_event
from registry.invalidation import participant_changed
from registry.models import AuditAction, Endpoint, Participant, Status
from registry.services.lifecycle import _add_maker, _locked, _require_live, _save


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
