"""A DRF provider view beside the lender API: ``OCENAuthentication`` with
``ResponseSigningMiddleware``, as a participant using DRF would set it up."""

import uuid

from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from examples import lender_api
from ocen_sdk.django import OCENAuthentication


class LoanOffers(APIView):
    authentication_classes = [OCENAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request):
        return Response({"offerId": f"OFFER-{uuid.uuid4().hex[:12]}", "requestedBy": request.user.participant_id})


urlpatterns = [path("lender/drf-offers", LoanOffers.as_view()), *lender_api.urlpatterns]
