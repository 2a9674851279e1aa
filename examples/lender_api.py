"""A tiny lender API protected by the provider middleware.

In a real deployment this is the lender's own Django project with
``ocen_sdk.django.OCENProviderMiddleware`` in MIDDLEWARE; here ``ocen_protected``
applies the same checks to one view so the sample flow can serve it next to the
Auth Service.
"""

import json
import uuid

from django.http import JsonResponse
from django.urls import include, path

from ocen_sdk.django import ocen_protected


@ocen_protected
def loan_offers(request):
    """Answers a loan agent's request for offers (each answer a new offer id); the caller is already verified."""
    caller = request.ocen
    try:
        application = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "invalid_json"}, status=400)
    return JsonResponse({
        "offers": [{"offerId": f"OFFER-{uuid.uuid4().hex[:12]}", "amount": application.get("amount", 0),
                    "interestRate": 13.5}],
        "requestedBy": caller.participant_id,
        "verifiedWithKid": caller.signature.key.kid,
    })


@ocen_protected
def loan_accept(request):
    """Accepts an offer: a second operation, so a signature for one cannot be used at the other."""
    return JsonResponse({"accepted": True, "requestedBy": request.ocen.participant_id})


urlpatterns = [
    path("lender/loan-offers", loan_offers, name="lender-loan-offers"),
    path("lender/loan-accept", loan_accept, name="lender-loan-accept"),
    path("", include("authservice.urls")),
]
