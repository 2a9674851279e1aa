from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import include, path, re_path, reverse

from authservice import views
from authservice.observability import metrics
from registry.api.views import OcenParticipantRoleView


def signing_key_admin_moved(request: HttpRequest, rest: str) -> HttpResponseRedirect:
    """The signing keys' admin pages moved with their model from authservice to the
    signing app (same rows, same ids): links and bookmarks to the old pages follow."""
    query = request.META.get("QUERY_STRING", "")
    return HttpResponseRedirect(f"{reverse('admin:index')}signing/signingkey/{rest}" + (f"?{query}" if query else ""))


urlpatterns = [
    path("oauth2/token", views.TokenView.as_view(), name="oauth2-token"),
    path("oauth2/introspect", views.IntrospectionView.as_view(), name="oauth2-introspect"),
    path("oauth2/revoke", views.RevocationView.as_view(), name="oauth2-revoke"),
    path("oauth2/jwks", views.jwks, name="oauth2-jwks"),
    path(".well-known/jwks.json", views.jwks, name="well-known-jwks"),
    path(".well-known/openid-configuration", views.openid_configuration, name="openid-configuration"),
    re_path(r"^(?P<prefix>.+)/\.well-known/openid-configuration$", views.openid_configuration),
    re_path(r"^\.well-known/oauth-authorization-server(?P<suffix>/.*)?$", views.oauth_authorization_server,
            name="oauth-authorization-server"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("registry/v1/", include("registry.api.urls")),
    path("service/participant-roles/<str:participant_id>", OcenParticipantRoleView.as_view(),
         name="ocen-participant-role"),
    re_path(r"^admin/authservice/signingkey/(?P<rest>.*)$", signing_key_admin_moved),
    path("admin/", admin.site.urls),
]

handler404 = "authservice.views.json_404"
handler500 = "authservice.views.json_500"
