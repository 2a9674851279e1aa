"""OpenAPI description of the Bearer token authentication (drf-spectacular extension)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "authservice.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An access token from this service's token endpoint with scope registry.read."}


def registry_paths_only(endpoints):
    """The schema documents the registry API, not the admin or OAuth endpoints."""
    return [
        endpoint for endpoint in endpoints
        if endpoint[0].startswith(("/registry/v1/participants", "/service/participant-roles/"))
    ]
