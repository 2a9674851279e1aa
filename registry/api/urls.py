from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from authservice.csp import csp_update
from registry.api import views

app_name = "registry-api"

# The docs pages run under the strict CSP: Swagger UI's init script is served from its
# own URL (?script), and neither page has inline markup of ours. ReDoc's renderer
# (styled-components) injects <style> elements and runs its search index in a blob:
# worker, so that one page allows inline styles and blob: workers (never inline
# scripts). Both were checked in Chromium: without them ReDoc renders nothing.
swagger_ui = SpectacularSwaggerSplitView.as_view(url_name="registry-api:schema",
                                                 template_name="registry/api/swagger_ui.html")
redoc = csp_update(style_src=("'unsafe-inline'",), worker_src=("'self'", "blob:"))(
    SpectacularRedocView.as_view(url_name="registry-api:schema", template_name="registry/api/redoc.html"))

urlpatterns = [
    path("participants", views.ParticipantListView.as_view(), name="participant-list"),
    path("participants/<str:participant_id>", views.ParticipantDetailView.as_view(), name="participant-detail"),
    path("participants/<str:participant_id>/jwks", views.ParticipantJWKSView.as_view(), name="participant-jwks"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", swagger_ui, name="swagger-ui"),
    path("redoc", redoc, name="redoc"),
]
