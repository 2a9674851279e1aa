from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from authservice.csp import csp_update
from registry.api import views
from registry.api.docs import LocalRedocView, redoc_bundle

app_name = "registry-api"

# The docs pages run under the strict CSP: Swagger UI's init script is served from its
# own URL (?script), and neither page has inline markup of ours. ReDoc's renderer
# (styled-components) injects <style> elements and runs its search index in a blob:
# worker, so that one page allows inline styles and blob: workers (never inline
# scripts). Both were checked in Chromium: without them ReDoc renders nothing.
# Nothing on either page is loaded from another host (registry/api/docs.py).
swagger_ui = SpectacularSwaggerSplitView.as_view(url_name="registry-api:schema",
                                                 template_name="registry/api/swagger_ui.html")
redoc = csp_update(style_src=("'unsafe-inline'",), worker_src=("'self'", "blob:"))(
    LocalRedocView.as_view(url_name="registry-api:schema", template_name="registry/api/redoc.html"))

urlpatterns = [
    path("participants", views.ParticipantListView.as_view(), name="participant-list"),
    path("participants/<str:participant_id>", views.ParticipantDetailView.as_view(), name="participant-detail"),
    path("participants/<str:participant_id>/jwks", views.ParticipantJWKSView.as_view(), name="participant-jwks"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", swagger_ui, name="swagger-ui"),
    path("redoc", redoc, name="redoc"),
    path("redoc.standalone.js", redoc_bundle, name="redoc-bundle"),
]
