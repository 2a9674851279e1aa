"""The oauthlib request validator: client_credentials only, granted scopes only.

Replaces django-oauth-toolkit's defaults where they do not fit a financial network:
every scope granted to every client, a slow PBKDF2 secret check that also leaks
whether a client_id exists, URL-only RFC 8707 resources, opaque token storage, and
introspection open to any confidential client.
"""

import base64
import binascii
import logging
import time
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from django.contrib.auth.hashers import check_password, make_password
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import get_application_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from authservice.clientcache import ClientRecord, client_cache
from authservice.conf import authservice_settings
from authservice.hooks import ClientGrants
from authservice.observability import annotate
from authservice.replay import claim_once
from authservice.revocation import revoke_access_token, token_is_live
from authservice.tokens import validate_access_token
from ocen_sdk.jws import ALGORITHMS, JWSError, peek_claims, static_resolver, validate_claims, verify_jwt
from ocen_sdk.remote import ASSERTION_TYPE

logger = logging.getLogger(__name__)

CLIENT_CREDENTIALS = "client_credentials"
# Compared against when the client_id is unknown, so both cases cost one hash.
_DUMMY_SECRET_HASH = make_password("unknown-client", hasher="client_secret_sha256")


def basic_credentials(request) -> tuple[str, str] | None:
    """(client_id, secret) from ``Authorization: Basic``; ("", "") when malformed, None when
    absent. Takes Django's request (read from META: building ``request.headers`` copies
    every header) or oauthlib's."""
    if isinstance(request, HttpRequest):  # never getattr: oauthlib's request answers any name from the form
        header = request.META.get("HTTP_AUTHORIZATION", "")
    else:
        header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not base64, not ASCII, not UTF-8
        return ("", "")
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return ("", "")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return unquote_plus(client_id), unquote_plus(secret)


class ClientCredentialsValidator(OAuth2Validator):
    # --- client authentication -----------------------------------------------------------

    def client_authentication_required(self, request, *args, **kwargs) -> bool:
        return True

    def authenticate_client(self, request, *args, **kwargs) -> bool:
        """client_secret_basic, client_secret_post or private_key_jwt: exactly one of them.

        Secrets cost one hash whether or not the client exists.
        """
        basic = basic_credentials(request)
        body_secret = getattr(request, "client_secret", None)
        params = dict(request.decoded_body or [])
        if "client_assertion" in params or "client_assertion_type" in params:
            if basic is not None or body_secret:
                return False
            return self._authenticate_assertion(request, params)
        if basic is not None:
            client_id, secret = basic
            # RFC 6749 §2.3: one authentication method per request, naming one client.
            if body_secret or (request.client_id and request.client_id != client_id):
                return False
        else:
            client_id, secret = request.client_id or "", body_secret or ""
        record = self._active_record(client_id)
        stored = record.client.client_secret if record is not None else _DUMMY_SECRET_HASH
        secret_ok = check_password(secret, stored)
        if record is None or not (secret_ok or self._previous_secret_matches(record.client, secret)):
            return False
        return self._accept(request, record)

    def _authenticate_assertion(self, request, params: dict[str, str]) -> bool:
        """RFC 7523 private_key_jwt, signed with one of the participant's registered keys."""
        if params.get("client_assertion_type") != ASSERTION_TYPE:
            return False
        assertion = params.get("client_assertion", "")
        try:
            client_id = peek_claims(assertion).get("iss")
        except JWSError:
            return False
        if not isinstance(client_id, str) or (request.client_id and request.client_id != client_id):
            return False
        record = self._active_record(client_id)
        if record is None:
            return False
        try:
            claims = verify_jwt(assertion, static_resolver(record.keys), algorithms=ALGORITHMS,
                                typ=None).claims
        except JWSError as exc:
            logger.info("client assertion refused for client_id=%s: %s", client_id, exc.code)
            return False
        if not self._assertion_claims_valid(claims, client_id):
            return False
        # Remembered for as long as the assertion could still be accepted: exp plus the leeway.
        expires_at = datetime.fromtimestamp(claims["exp"] + authservice_settings.LEEWAY, tz=UTC)
        if not claim_once("client_assertion", f"{client_id}:{claims['jti']}", expires_at=expires_at):
            logger.warning("replayed client assertion refused for client_id=%s", client_id)
            return False
        return self._accept(request, record)

    @staticmethod
    def _assertion_claims_valid(claims: dict, client_id: str) -> bool:
        """RFC 7523 §3: iss = sub = client_id, aud names this service, a short life, a jti."""
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return False
        token_endpoint = authservice_settings.issuer_origin + reverse("oauth2-token")
        try:
            validate_claims(claims, issuer=client_id, audience={token_endpoint, authservice_settings.ISSUER},
                            leeway=authservice_settings.LEEWAY)
        except JWSError as exc:
            logger.info("client assertion refused for client_id=%s: %s", client_id, exc.code)
            return False
        if claims["exp"] - time.time() > authservice_settings.MAX_CLIENT_ASSERTION_LIFETIME:
            return False
        jti = claims.get("jti")
        return isinstance(jti, str) and 0 < len(jti) <= 200

    @staticmethod
    def _previous_secret_matches(client, secret: str) -> bool:
        """During a rotation's grace period the old secret still works."""
        expires = client.previous_secret_expires_at
        if not client.previous_client_secret or expires is None or expires <= timezone.now():
            return False
        return check_password(secret, client.previous_client_secret)

    def authenticate_client_id(self, client_id, request, *args, **kwargs) -> bool:
        return False  # no public clients

    @staticmethod
    def _active_record(client_id: str) -> ClientRecord | None:
        """The cached record of an active confidential client_credentials client."""
        if not client_id or len(client_id) > 100 or "\x00" in client_id:
            return None
        record = client_cache.get(client_id)
        if record is None:
            return None
        Client = get_application_model()
        if record.client.authorization_grant_type != Client.GRANT_CLIENT_CREDENTIALS:
            return None
        if record.client.client_type != Client.CLIENT_CONFIDENTIAL:
            return None
        return record

    @staticmethod
    def _accept(request, record: ClientRecord) -> bool:
        annotate(client_id=record.client.client_id, participant_id=record.grants.claims.get("participantId"))
        request.client = record.client
        request.client_id = record.client.client_id
        request.client_grants = record.grants
        return True

    @staticmethod
    def _grants(request) -> ClientGrants:
        """The grants loaded with the authenticated client (same generation)."""
        return getattr(request, "client_grants", None) or ClientGrants(scopes_by_audience={})

    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs) -> bool:
        return grant_type == CLIENT_CREDENTIALS

    # --- scopes and audiences --------------------------------------------------------------

    def _requested_resources(self, request) -> list[str]:
        return [value for key, value in (request.decoded_body or []) if key == "resource"]

    def get_default_scopes(self, client_id, request, *args, **kwargs) -> list[str]:
        grants = self._grants(request)
        resources = self._requested_resources(request)
        audiences = resources or list(grants.scopes_by_audience)
        scopes = set().union(*(grants.scopes_by_audience.get(aud, frozenset()) for aud in audiences))
        return sorted(scopes)

    def validate_scopes(self, client_id, scopes, client, request, *args, **kwargs) -> bool:
        """Grant only from the client's mappings; decide the token's audiences."""
        grants = self._grants(request)
        resources = self._requested_resources(request)
        unknown = [r for r in resources if r not in grants.scopes_by_audience]
        if unknown:
            raise errors.CustomOAuth2Error(
                error="invalid_target",
                description=f"The client may not obtain tokens for resource {unknown[0]}.",
                request=request,
            )
        candidates = resources or list(grants.scopes_by_audience)
        requested = set(scopes)
        if not requested:
            return False
        audiences = {aud for aud in candidates if grants.scopes_by_audience[aud] & requested}
        allowed = set().union(*(grants.scopes_by_audience[aud] for aud in candidates))
        if not requested <= allowed:
            return False
        providers = audiences - {authservice_settings.REGISTRY_AUDIENCE}
        if len(providers) > 1:
            # One provider per token: a scope granted at one provider must never be usable
            # at another, and a provider checks only that the token names it.
            raise errors.CustomOAuth2Error(
                error="invalid_target",
                description=(f"A token is for one provider at a time, and these scopes are granted at "
                             f"{len(providers)}: name the one you call with resource (RFC 8707)."),
                request=request,
            )
        request.token_audiences = audiences
        request.token_claims = grants.claims
        return True

    # --- storage ---------------------------------------------------------------------------------

    def save_bearer_token(self, token, request, *args, **kwargs) -> None:
        """Nothing to store: the access token is a self-contained signed JWT.

        Whether it is still good is decided when it is presented: signature and expiry,
        its client still active (suspension and offboarding), and its jti absent from
        the revocation list. So issuing a token costs no database write at all.
        """

    # --- introspection and revocation ----------------------------------------------------------

    def _parsed(self, token: str):
        try:
            return validate_access_token(token)
        except JWSError:
            return None

    def introspect_token(self, token, token_type_hint, request, *args, **kwargs):
        """RFC 7662, restricted: only the token's own client or one of its audiences may look."""
        parsed = self._parsed(token)
        if parsed is None or not token_is_live(parsed):
            return None
        caller = request.client
        caller_identities = self._grants(request).identities
        if caller.client_id != parsed.client_id and not caller_identities & set(parsed.audiences):
            return None
        claims = {key: value for key, value in parsed.claims.items()}
        claims["token_type"] = "Bearer"  # noqa: S105
        claims["iss"] = authservice_settings.ISSUER
        return claims

    def revoke_token(self, token, token_type_hint, request, *args, **kwargs) -> None:
        """RFC 7009: a client revokes only its own, unexpired tokens; anything else is a
        silent no-op (the response does not say whether the token existed)."""
        parsed = self._parsed(token)
        if parsed is None or parsed.client_id != request.client.client_id:
            return
        revoke_access_token(parsed)
        logger.info("revoked token jti=%s client_id=%s", parsed.jti, request.client.client_id)
