"""The OpenAPI description: the registry API (drf-spectacular, from the views) plus
the OAuth endpoints (plain Django views, described here by hand), one document.

Security: the registry API takes an access token from the token endpoint
(``oauth2``, the client_credentials flow, so Swagger UI's Authorize fetches one);
the OAuth endpoints authenticate the client itself (``clientBasic`` or form fields).
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from authservice.views import CLIENT_AUTH_METHODS

OAUTH_ERROR = {
    "type": "object",
    "description": "RFC 6749 §5.2 error",
    "required": ["error"],
    "properties": {"error": {"type": "string", "example": "invalid_client"},
                   "error_description": {"type": "string"}},
}
JWK_SET = {"type": "object", "required": ["keys"],
           "properties": {"keys": {"type": "array", "items": {"type": "object", "additionalProperties": True}}}}


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "authservice.authentication.BearerTokenAuthentication"
    name = "oauth2"

    def get_security_definition(self, auto_schema):
        return {
            "type": "oauth2",
            "description": "An access token from this service's token endpoint (client_credentials) with scope "
                           "registry.read, for the audience urn:ocen:registry.",
            "flows": {"clientCredentials": {"tokenUrl": "/oauth2/token",
                                            "scopes": {"registry.read": "Read the participant registry"}}},
        }


def registry_paths_only(endpoints):
    """drf-spectacular documents the registry API, not the admin."""
    return [
        endpoint for endpoint in endpoints
        if endpoint[0].startswith(("/registry/v1/participants", "/service/participant-roles/"))
    ]


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/"
                                                                                             "OAuthError"}}}}


def _oauth_post(summary: str, fields: dict, required: list[str], ok: dict, operation_id: str) -> dict:
    return {"post": {
        "operationId": operation_id, "summary": summary, "tags": ["oauth2"],
        "security": [{"clientBasic": []}, {}],
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": required, "properties": fields}}}},
        "responses": {
            "200": ok,
            "400": _error("Malformed request (RFC 6749 invalid_request, unsupported_grant_type, invalid_scope, "
                          "invalid_target)"),
            "401": {**_error("Client authentication failed (invalid_client)"),
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
            "405": _error("Use POST"),
            "413": _error("The body is larger than the limit"),
            "429": _error("Too many failed authentications from this address"),
            "503": {**_error("The database or cache is unreachable (temporarily_unavailable)"),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
        }}}


CLIENT_FIELDS = {
    "client_id": {"type": "string", "description": "client_secret_post, or with private_key_jwt"},
    "client_secret": {"type": "string", "description": "client_secret_post"},
    "client_assertion_type": {"type": "string",
                              "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]},
    "client_assertion": {"type": "string", "description": "private_key_jwt (RFC 7523), signed with a registered key"},
}


def _get(summary: str, schema: dict, operation_id: str) -> dict:
    return {"get": {"operationId": operation_id, "summary": summary, "tags": ["oauth2"], "security": [{}],
                    "responses": {"200": {"description": summary, "content": {"application/json": {
                        "schema": schema}}}, "503": _error("Nothing to serve yet: the database is unreachable")}}}


def oauth_endpoints(result, generator, request, public):
    """Add the OAuth endpoints, their form bodies and error shapes, and the client auth scheme."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["OAuthError"] = OAUTH_ERROR
    components.setdefault("securitySchemes", {})["clientBasic"] = {
        "type": "http", "scheme": "basic", "description": "client_secret_basic: client id and secret"}
    token_ok = {"description": "An RFC 9068 JWT access token", "content": {"application/json": {"schema": {
        "type": "object", "required": ["access_token", "token_type", "expires_in"],
        "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string", "enum": ["Bearer"]},
                       "expires_in": {"type": "integer"}, "scope": {"type": "string"}}}}}}
    introspection_ok = {"description": "RFC 7662: {active: false} for any token the caller may not see",
                        "content": {"application/json": {"schema": {
                            "type": "object", "required": ["active"],
                            "properties": {"active": {"type": "boolean"}}, "additionalProperties": True}}}}
    paths = result.setdefault("paths", {})
    paths["/oauth2/token"] = _oauth_post(
        "Get an access token (client_credentials)",
        {"grant_type": {"type": "string", "enum": ["client_credentials"]},
         "scope": {"type": "string", "description": "space-separated; default: everything granted"},
         "resource": {"type": "array", "items": {"type": "string"},
                      "description": "RFC 8707 audiences, e.g. urn:ocen:participant:<id>"}, **CLIENT_FIELDS},
        ["grant_type"], token_ok, "oauth2_token")
    paths["/oauth2/introspect"] = _oauth_post(
        "Introspect a token (its own client or one of its audiences only)",
        {"token": {"type": "string"}, "token_type_hint": {"type": "string"}, **CLIENT_FIELDS},
        ["token"], introspection_ok, "oauth2_introspect")
    paths["/oauth2/revoke"] = _oauth_post(
        "Revoke one of the caller's own tokens (RFC 7009)",
        {"token": {"type": "string"}, "token_type_hint": {"type": "string"}, **CLIENT_FIELDS},
        ["token"], {"description": "Revoked, or nothing to revoke (RFC 7009 says nothing either way)"},
        "oauth2_revoke")
    paths["/oauth2/jwks"] = _get("The service's public keys (JWKS)", JWK_SET, "oauth2_jwks")
    paths["/.well-known/openid-configuration"] = _get(
        "OpenID Connect discovery metadata",
        {"type": "object", "required": ["issuer", "token_endpoint", "jwks_uri"], "additionalProperties": True,
         "properties": {"token_endpoint_auth_methods_supported": {
             "type": "array", "items": {"type": "string", "enum": CLIENT_AUTH_METHODS}}}},
        "openid_configuration")
    return result
