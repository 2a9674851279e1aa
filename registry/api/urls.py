from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from registry.api import views

app_name = "registry-api"

urlpatterns = [
    path("participants", views.ParticipantListView.as_view(), name="participant-list"),
    path("participants/<str:participant_id>", views.ParticipantDetailView.as_view(), name="participant-detail"),
    path("participants/<str:participant_id>/jwks", views.ParticipantJWKSView.as_view(), name="participant-jwks"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="registry-api:schema"), name="swagger-ui"),
    path("redoc", SpectacularRedocView.as_view(url_name="registry-api:schema"), name="redoc"),
]
