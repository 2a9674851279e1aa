"""DRF authentication for APIs this service hosts (the registry): a Bearer access
token issued here, validated offline, whose client is still active and which has
not been revoked."""

from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from authservice.conf import authservice_settings
from authservice.revocation import live_client_record
from authservice.tokens import AccessToken, validate_access_token
from ocen_sdk.jws import JWSError


class InvalidToken(exceptions.AuthenticationFailed):
    default_code = "invalid_token"


class InsufficientScope(exceptions.PermissionDenied):
    default_code = "insufficient_scope"


@dataclass(frozen=True)
class TokenCaller:
    """``request.user`` for a token-authenticated API call."""

    token: AccessToken
    # The caller's client generation read while authenticating (authservice.clientcache).
    generation: int
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def client_id(self) -> str:
        return self.token.client_id

    @property
    def participant_id(self) -> str | None:
        return self.token.claims.get("participantId")

    def __str__(self) -> str:
        return f"client {self.client_id}"


class BearerTokenAuthentication(BaseAuthentication):
    audience_setting = "REGISTRY_AUDIENCE"

    def authenticate(self, request):
        header = get_authorization_header(request)
        if not header:
            return None
        try:
            scheme, _, value = header.decode("ascii").partition(" ")
        except UnicodeDecodeError as exc:
            raise InvalidToken("The Authorization header is not ASCII.") from exc
        if scheme.lower() != "bearer" or not value.strip():
            raise InvalidToken("Use the Bearer scheme with an access token from this service.")
        audience = getattr(authservice_settings, self.audience_setting)
        try:
            token = validate_access_token(value.strip(), audience=audience)
        except JWSError as exc:
            raise InvalidToken(f"The access token is invalid: {exc}.") from exc
        record = live_client_record(token)
        if record is None:
            raise InvalidToken("The access token was revoked or its client is no longer active.")
        return TokenCaller(token, generation=record.generation), token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="registry", error="invalid_token"'


class HasScope(BasePermission):
    """Requires the view's ``required_scope`` in the caller's token."""

    def has_permission(self, request, view) -> bool:
        scope = getattr(view, "required_scope", None)
        if not isinstance(request.user, TokenCaller):
            return False
        if scope and scope not in request.user.token.scopes:
            exc = InsufficientScope(f"The access token lacks the {scope!r} scope.")
            exc.auth_header = f'Bearer realm="registry", error="insufficient_scope", scope="{scope}"'
            raise exc
        return True
