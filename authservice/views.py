"""HTTP endpoints of the OAuth provider: token, introspection, revocation, JWKS,
discovery metadata and health checks."""

import json
import logging
import sys
from contextlib import nullcontext
from functools import lru_cache
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.core.signals import setting_changed
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.settings import oauth2_settings

from authservice import lockouts
from authservice.availability import is_unavailable, unavailable_response
from authservice.clientcache import generation_pinned
from authservice.conf import authservice_settings
from authservice.observability import CLIENT_AUTH_FAILURES, TOKENS_ISSUED, TOKENS_REFUSED
from ocen_sdk.jws import ALGORITHMS
from signing.jwks import published_jwks
from signing.keys import SigningKeyUnavailable, active_signer

logger = logging.getLogger(__name__)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# RFC 8707 allows `resource` to repeat; RFC 6749 §3.2 forbids repeating anything else.
REPEATABLE_PARAMETERS = {"resource"}
# Seconds a client is asked to wait when the service cannot sign (an operator must act).
SIGNING_UNAVAILABLE_RETRY_AFTER = 30
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
# oauthlib often sends a bare error code; say what went wrong (RFC 6749 §5.2).
ERROR_DESCRIPTIONS = {
    "invalid_client": "Client authentication failed: unknown client, wrong secret, or inactive client.",
    "invalid_scope": "The requested scope is not granted to this client.",
    "unsupported_grant_type": "Only the client_credentials grant is supported.",
    "invalid_request": "The request is malformed.",
    "unauthorized_client": "This client may not use this grant type.",
    "unsupported_token_type": "Only access tokens can be revoked or introspected.",
}


def access_token_lifetime(request) -> int:
    """oauthlib's ``expires_in``: the service's one token-lifetime setting."""
    return authservice_settings.ACCESS_TOKEN_TTL


@lru_cache(maxsize=1)
def oauth_server():
    """The oauthlib server, built once per process from DOT's settings."""
    server_class = oauth2_settings.OAUTH2_SERVER_CLASS
    validator_class = oauth2_settings.OAUTH2_VALIDATOR_CLASS
    return server_class(validator_class(), **{**oauth2_settings.server_kwargs,
                                              "token_expires_in": access_token_lifetime})


def _reset_server(*, setting: str, **kwargs) -> None:
    if setting in {"OAUTH2_PROVIDER", "AUTHSERVICE"}:
        oauth_server.cache_clear()


setting_changed.connect(_reset_server)


def oauth_error(status: int, error: str, description: str, headers: dict | None = None) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


class BadOAuthRequest(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _checked_form_body(request: HttpRequest) -> tuple[str, dict[str, str]]:
    """The request body as text and its parameters (the last ``resource`` of several), after
    the checks oauthlib does not make."""
    content_type = request.content_type.lower()
    if content_type != FORM_CONTENT_TYPE:
        raise BadOAuthRequest(400, f"The request body must be {FORM_CONTENT_TYPE}.")
    limit = authservice_settings.MAX_OAUTH_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise BadOAuthRequest(413, f"The request body is larger than {limit} bytes.")
    try:
        raw = request.body
    except RequestDataTooBig as exc:
        raise BadOAuthRequest(413, f"The request body is larger than {limit} bytes.") from exc
    if len(raw) > limit:
        raise BadOAuthRequest(413, f"The request body is larger than {limit} bytes.")
    charset = (request.content_params.get("charset") or "utf-8").lower()
    if charset not in {"utf-8", "utf8"}:
        raise BadOAuthRequest(400, "The request body must be UTF-8.")
    try:
        body = raw.decode("utf-8")
        params = parse_qsl(body, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadOAuthRequest(400, "The request body is not valid UTF-8 form data.") from exc
    seen: dict[str, str] = {}
    for name, value in params:
        if "\x00" in name or "\x00" in value:
            raise BadOAuthRequest(400, "The request body contains a NUL character.")
        if name in seen and name not in REPEATABLE_PARAMETERS:
            raise BadOAuthRequest(400, f"The parameter {name!r} is repeated.")
        seen[name] = value
    if request.GET:
        raise BadOAuthRequest(400, "Parameters must be sent in the request body, not the URL.")
    return body, seen


def _described(body: str | None, status: int) -> str:
    if not body or status < 400:
        return body or ""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if isinstance(payload, dict) and "error" in payload and "error_description" not in payload:
        payload["error_description"] = ERROR_DESCRIPTIONS.get(payload["error"], payload["error"])
    return json.dumps(payload)


@method_decorator(csrf_exempt, name="dispatch")
class OAuthEndpointView(View):
    """POST-only, form-encoded OAuth endpoint; errors are RFC 6749 §5.2 JSON.

    Each authenticates a client, so each counts failed authentications and refuses a
    locked-out client address or (client_id, address) before authenticating it
    (``authservice.lockouts``).
    """

    http_method_names = ["post", "options"]
    required_parameters: tuple[str, ...] = ()

    def http_method_not_allowed(self, request, *args, **kwargs):
        return oauth_error(405, "invalid_request", "Use POST.", {"Allow": "POST"})

    def post(self, request: HttpRequest) -> HttpResponse:
        response = self._post(request)
        self.count(response)
        return response

    def count(self, response: HttpResponse) -> None:
        """Metrics: failed client authentications here (tokens are counted by TokenView)."""
        if response.status_code == 401:
            CLIENT_AUTH_FAILURES.labels(self.metric_name).inc()

    metric_name = "oauth"

    def _post(self, request: HttpRequest) -> HttpResponse:
        try:
            body, params = _checked_form_body(request)
        except BadOAuthRequest as exc:
            return oauth_error(exc.status, "invalid_request", exc.description)
        missing = [name for name in self.required_parameters if name not in params]
        if missing:
            return oauth_error(400, "invalid_request", f"Missing parameter {missing[0]!r}.")
        attempt = lockouts.attempt_for(request, params)
        check = lockouts.check(attempt)
        if check.locked_for:
            # RFC 6749 §5.2 has no error for this. Not `invalid_client`: the credentials
            # were not even checked, and a client told they are wrong may page its
            # operators or rotate a good secret. Not `slow_down`: RFC 8628 gives it to
            # device-code polling. `temporarily_unavailable` (RFC 6749 §4.1.2.1) says
            # "retry later", which with Retry-After is exactly the case.
            return oauth_error(429, "temporarily_unavailable",
                               "Too many failed client authentications from this address; retry later.",
                               {"Retry-After": str(check.locked_for)})
        headers = {"Content-Type": FORM_CONTENT_TYPE}
        if "HTTP_AUTHORIZATION" in request.META:
            headers["Authorization"] = request.META["HTTP_AUTHORIZATION"]
        uri = request.build_absolute_uri(request.path)
        try:
            pinned = (generation_pinned(attempt.client_id, check.client_generation)  # read by the check
                      if check.generation_read else nullcontext())
            with pinned:
                response_headers, response_body, status = self.respond(uri, body, headers)
        except SigningKeyUnavailable as exc:
            # A deployment mistake (wrong key-encryption key, no key), not the client's:
            # /readyz and `manage.py check` name it; clients are told to come back.
            logger.error("cannot sign tokens: %s", exc)
            return oauth_error(503, "temporarily_unavailable",
                               "The service cannot issue tokens right now; try again later.",
                               {"Retry-After": str(SIGNING_UNAVAILABLE_RETRY_AFTER)})
        response = HttpResponse(_described(response_body, status), status=status)
        for name, value in response_headers.items():
            response[name] = value
        if response_body:
            response["Content-Type"] = "application/json"
        if status == 401:
            lockouts.record_failure(attempt)
            # oauthlib says "Bearer"; a client authenticating with a secret is challenged
            # with the scheme it should use (RFC 6749 §5.2).
            realm = authservice_settings.ISSUER
            response["WWW-Authenticate"] = f'Basic realm="{realm}", error="invalid_client"'
        response["Cache-Control"] = "no-store"
        self.record_activity(attempt.client_id, status)
        return response

    def record_activity(self, client_id: str, status: int) -> None:
        """Activity counters (the token endpoint's; see TokenView)."""

    def respond(self, uri: str, body: str, headers: dict) -> tuple[dict, str, int]:
        raise NotImplementedError


class TokenView(OAuthEndpointView):
    required_parameters = ("grant_type",)
    metric_name = "token"

    def count(self, response: HttpResponse) -> None:
        super().count(response)
        if response.status_code == 200:
            TOKENS_ISSUED.inc()
            return
        try:
            reason = json.loads(response.content).get("error", "unknown")
        except ValueError:
            reason = "unknown"
        TOKENS_REFUSED.labels(reason if reason in ERROR_DESCRIPTIONS or reason == "invalid_target" else "other").inc()

    def record_activity(self, client_id: str, status: int) -> None:
        """Tell ``AUTHSERVICE["TOKEN_ACTIVITY_RECORDER"]`` of a token issued or a failed
        client authentication; a failing recorder never fails the request."""
        if status not in (200, 401) or not client_id:
            return
        try:
            authservice_settings.TOKEN_ACTIVITY_RECORDER(client_id=client_id, issued=status == 200)
        except Exception:
            logger.exception("the token activity recorder failed")

    def respond(self, uri, body, headers):
        return oauth_server().create_token_response(uri, "POST", body, headers)


class RevocationView(OAuthEndpointView):
    required_parameters = ("token",)
    metric_name = "revoke"

    def respond(self, uri, body, headers):
        return oauth_server().create_revocation_response(uri, "POST", body, headers)


class IntrospectionView(OAuthEndpointView):
    required_parameters = ("token",)
    metric_name = "introspect"

    def respond(self, uri, body, headers):
        return oauth_server().create_introspect_response(uri, "POST", body, headers)


# --- Keys and metadata ----------------------------------------------------------------------

def _cacheable_json(data: dict, max_age: int) -> JsonResponse:
    response = JsonResponse(data)
    response["Cache-Control"] = f"public, max-age={max_age}"
    response["Access-Control-Allow-Origin"] = "*"
    return response


def jwks(request: HttpRequest) -> JsonResponse:
    if request.method not in {"GET", "HEAD"}:
        return oauth_error(405, "invalid_request", "Use GET.", {"Allow": "GET, HEAD"})
    return _cacheable_json(published_jwks(), authservice_settings.JWKS_MAX_AGE)


def server_metadata() -> dict:
    issuer = authservice_settings.ISSUER
    origin = authservice_settings.issuer_origin

    def url(name: str) -> str:
        return origin + reverse(name)

    alg = authservice_settings.SIGNING_ALG
    return {
        "issuer": issuer,
        "token_endpoint": url("oauth2-token"),
        "jwks_uri": url("oauth2-jwks"),
        "introspection_endpoint": url("oauth2-introspect"),
        "revocation_endpoint": url("oauth2-revoke"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "scopes_supported": sorted(oauth2_settings.SCOPES),
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "id_token_signing_alg_values_supported": [alg],
        "access_token_signing_alg_values_supported": [alg],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "azp", "scope",
                             "participantId", "participant_role", "org_id"],
    }


def _metadata_response(request: HttpRequest, issuer_path: str) -> JsonResponse:
    if issuer_path.rstrip("/") != authservice_settings.issuer_path:
        raise Http404("No authorization server has that issuer.")
    if request.method not in {"GET", "HEAD"}:
        return oauth_error(405, "invalid_request", "Use GET.", {"Allow": "GET, HEAD"})
    return _cacheable_json(server_metadata(), authservice_settings.JWKS_MAX_AGE)


def openid_configuration(request: HttpRequest, prefix: str = "") -> JsonResponse:
    """OpenID Connect discovery at {issuer}/.well-known/openid-configuration."""
    return _metadata_response(request, f"/{prefix}" if prefix else "")


def oauth_authorization_server(request: HttpRequest, suffix: str = "") -> JsonResponse:
    """RFC 8414 metadata at /.well-known/oauth-authorization-server{issuer path}."""
    return _metadata_response(request, suffix or "")


# --- Health -----------------------------------------------------------------------------------

def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": "ok", "signing_key": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means "not ready", never a 500
        logger.warning("readiness: database unreachable (%s)", type(exc).__name__)
        checks["database"] = "unreachable"
    if settings.REDIS_URL:
        try:
            cache.set("readyz", "ok", timeout=5)
            checks["redis"] = "ok" if cache.get("readyz") == "ok" else "unreachable"
        except Exception as exc:
            logger.warning("readiness: Redis unreachable (%s)", type(exc).__name__)
            checks["redis"] = "unreachable"
    if checks["database"] == "ok":
        try:
            if active_signer() is None:
                checks["signing_key"] = "missing"
        except Exception:
            logger.exception("readiness: signing key cannot be loaded")
            checks["signing_key"] = "unloadable"
    # Redis is a shared cache: without it tokens are still issued and failed
    # authentications still counted (in the database), so the instance stays in rotation.
    ready = checks["database"] == "ok" and checks["signing_key"] == "ok"
    status = ("ok" if all(value == "ok" for value in checks.values()) else "degraded") if ready else "unavailable"
    response = JsonResponse({"status": status, "checks": checks}, status=200 if ready else 503)
    response["Cache-Control"] = "no-store"
    return response


def json_404(request: HttpRequest, exception=None) -> JsonResponse:
    return JsonResponse({"error": "not_found", "error_description": "No such resource."}, status=404)


def json_500(request: HttpRequest) -> JsonResponse:
    """Django's 500 handler; a dependency that failed in a middleware is a 503 here."""
    exc = sys.exc_info()[1]
    if is_unavailable(exc):
        return unavailable_response(request, exc)
    return JsonResponse({"error": "server_error", "error_description": "Internal error."}, status=500)


