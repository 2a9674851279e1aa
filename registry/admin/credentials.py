"""The one-time hand-off of a new client secret to its page, and the configuration file a
participant's developers use (the secret in it only once, when the operator asks)."""

from urllib.parse import urljoin

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from authservice.conf import authservice_settings
from authservice.views import server_metadata
from registry import credential_handoff, services
from registry.admin.base import SeeOther
from registry.models import Participant


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
