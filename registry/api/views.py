"""Registry REST API: one view per operation, reads through selectors.

Every response carries an ETag and honours If-None-Match, so providers can cache
keys and revalidate with a cheap 304. Every answer, 304s and errors included, is
signed by the service and bound to the path asked and the time (``ocen_sdk.http``).
"""

import hashlib
import json
import logging
import uuid
from functools import cached_property, partial

from django.core.cache import cache
from django.core.paginator import Paginator as DjangoPaginator
from django.http import HttpResponse, HttpResponseNotModified
from django.utils.cache import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authservice.authentication import BearerTokenAuthentication, HasScope
from authservice.conf import authservice_settings
from authservice.observability import REGISTRY_CACHE
from ocen_sdk.http import SIGNATURE_HEADER
from registry import selectors
from registry.api.cache import earliest_key_expiry, render, rendered_cache
from registry.api.serializers import (
    JWKSetSerializer,
    OcenParticipantRoleSerializer,
    ParticipantFilterSerializer,
    ParticipantPageSerializer,
    ParticipantSerializer,
)
from registry.invalidation import list_generation, participant_generation
from signing.responses import sign_response

logger = logging.getLogger(__name__)


def _sign_error_response(response, path: str):
    """Errors (401, 403, 404, 400) are signed too: a client can tell the registry's
    "no such participant" from a forged one."""
    if response.content and not response.has_header(SIGNATURE_HEADER):
        signature = sign_response(response.content, path)
        if signature:
            response[SIGNATURE_HEADER] = signature
    return response
NOT_FOUND = OpenApiResponse(description="Unknown or offboarded participant")
BAD_ID = OpenApiResponse(description="The participant id is not a UUID")
ERRORS = {401: OpenApiResponse(description="Missing or invalid access token"),
          403: OpenApiResponse(description="The token lacks the registry.read scope")}
CACHE_HEADERS = [
    OpenApiParameter("ETag", str, OpenApiParameter.HEADER, response=True,
                     description="Validator of this answer; send it back in If-None-Match to get a 304"),
    OpenApiParameter(SIGNATURE_HEADER, str, OpenApiParameter.HEADER, response=True,
                     description="The service's detached JWS over the body (over the ETag for a 304), with "
                                 "critical htu (this path) and iat: verify with the service JWKS"),
    OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER, required=False,
                     description="An ETag from an earlier answer: 304 Not Modified when nothing changed"),
]
NOT_MODIFIED = OpenApiResponse(description="Not modified since the ETag sent in If-None-Match (signed too)")


COUNT_TTL = 3600  # seconds; a count is keyed by the list generation, so it is never stale, only unused


def count_key(generation: int, filters: dict) -> str:
    """The cache key of the count of a filtered participant list as of ``generation``."""
    shown = json.dumps([generation, sorted((name, str(value)) for name, value in filters.items() if value)])
    return "registry:participant-count:" + hashlib.sha256(shown.encode()).hexdigest()


class CachedCountPaginator(DjangoPaginator):
    """Django's paginator, counting once per list change instead of once per page: the
    count is kept in the shared cache under the filters and the list generation read
    before the request was built (``registry.invalidation``), so every page and every
    worker reuse it until a change. A broad search (every name matches) counts every
    match: 50 ms at 100,000 participants, then nothing until the next change."""

    def __init__(self, *args, count_key: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.count_key = count_key

    @cached_property
    def count(self) -> int:
        try:
            count = cache.get(self.count_key)
        except Exception:  # an unreachable Redis costs the count, not the answer
            logger.warning("participant count: cache unreachable", exc_info=True)
            return DjangoPaginator.count.func(self)
        if count is None:
            count = DjangoPaginator.count.func(self)
            try:
                cache.set(self.count_key, count, timeout=COUNT_TTL)
            except Exception:  # as above
                logger.warning("participant count: cache unreachable", exc_info=True)
        return count


class ParticipantPagination(PageNumberPagination):
    """Numbered pages (``?page=N``, the default, kept for existing clients) over a sort
    by name, with an exact count, counted once per list change (``CachedCountPaginator``).
    Deep pages cost more the deeper they are: crawl with the cursor instead."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def __init__(self, *, count_key: str) -> None:
        self.django_paginator_class = partial(CachedCountPaginator, count_key=count_key)


class ParticipantCursorPagination(CursorPagination):
    """``?cursor=`` (empty to start, then the ``next`` links): keyset pagination on the
    primary key. Every page costs one index
    range scan whatever its depth, a crawl sees each participant once even while
    others are added, and nothing is counted (``count`` is null)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "pk"

    def get_paginated_response_schema(self, schema):  # pragma: no cover - the serializer documents it
        return schema

    def get_paginated_data(self, data):
        return {"count": None, "next": self.get_next_link(), "previous": self.get_previous_link(), "results": data}


class RegistryView(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [HasScope]

    @property
    def required_scope(self) -> str:
        return authservice_settings.REGISTRY_SCOPE

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code == 200:
            response["Cache-Control"] = "private, no-cache"
        response["Vary"] = "Authorization"
        if hasattr(response, "add_post_render_callback"):
            path = request.get_full_path()
            response.add_post_render_callback(lambda rendered: _sign_error_response(rendered, path))
        return response

    def respond(self, request: Request, build, generation: int) -> HttpResponse:
        """Serve ``build()`` (data, valid_until) rendered and signed, from the cache when
        what it shows has not changed since it was rendered: ``generation`` is that of
        what it shows, read before ``build`` runs (``registry.invalidation``)."""
        path = request.get_full_path()
        key = (path, generation)
        entry = rendered_cache.get(key)
        REGISTRY_CACHE.labels("hit" if entry is not None else "miss").inc()
        if entry is None:
            data, valid_until = build()
            entry = render(data, valid_until=valid_until)
            rendered_cache.put(key, entry)
        not_modified = entry.etag in parse_etags(request.headers.get("If-None-Match", ""))
        response = HttpResponseNotModified() if not_modified else HttpResponse(entry.body,
                                                                               content_type="application/json")
        response["ETag"] = entry.etag
        signature = entry.signature(path, not_modified=not_modified)
        if signature:
            response[SIGNATURE_HEADER] = signature
        return response

    @staticmethod
    def parse_participant_id(participant_id: str) -> uuid.UUID:
        try:
            return uuid.UUID(participant_id)
        except ValueError as exc:
            raise exceptions.ValidationError({"participant_id": ["Not a valid UUID."]}) from exc

    def participant_generation(self, participant_id: str) -> int:
        """The generation of the participant an answer shows, read before it is built."""
        generation = participant_generation(self.parse_participant_id(participant_id))
        if generation is None:
            raise exceptions.NotFound("No such participant.")
        return generation

    def get_participant(self, participant_id: str):
        participant = selectors.participant_get(self.parse_participant_id(participant_id))
        if participant is None:
            raise exceptions.NotFound("No such participant.")
        return participant


class ParticipantListView(RegistryView):
    @extend_schema(operation_id="participants_list", parameters=[ParticipantFilterSerializer, *CACHE_HEADERS],
                   responses={200: ParticipantPageSerializer, 304: NOT_MODIFIED,
                              400: OpenApiResponse(description="Bad filter"),
                              404: OpenApiResponse(description="The page is out of range, or the cursor is not ours"),
                              **ERRORS})
    def get(self, request: Request) -> Response:
        filters = ParticipantFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        generation = list_generation()
        queryset = selectors.participant_list(role=data.get("role"), status=data.get("status"),
                                              org_id=data.get("organisation"), search=data.get("search"))
        def build():
            if "cursor" in request.query_params:
                paginator = ParticipantCursorPagination()
                page = paginator.paginate_queryset(queryset, request, view=self)
                body = paginator.get_paginated_data(ParticipantSerializer(page, many=True).data)
            else:
                counted = {name: data.get(name) for name in ("role", "status", "organisation", "search")}
                paginator = ParticipantPagination(count_key=count_key(generation, counted))
                page = paginator.paginate_queryset(queryset, request, view=self)
                body = paginator.get_paginated_response(ParticipantSerializer(page, many=True).data).data
            return body, earliest_key_expiry(page)

        return self.respond(request, build, generation)


ID_PARAMETER = OpenApiParameter("participant_id", OpenApiTypes.UUID, OpenApiParameter.PATH,
                                description="participant UUID")
ONE_PARTICIPANT = {304: NOT_MODIFIED, 400: BAD_ID, 404: NOT_FOUND, **ERRORS}


class ParticipantDetailView(RegistryView):
    @extend_schema(operation_id="participants_retrieve", parameters=[ID_PARAMETER, *CACHE_HEADERS],
                   responses={200: ParticipantSerializer, **ONE_PARTICIPANT})
    def get(self, request: Request, participant_id: str) -> Response:
        def build():
            participant = self.get_participant(participant_id)
            return ParticipantSerializer(participant).data, earliest_key_expiry([participant])

        return self.respond(request, build, self.participant_generation(participant_id))


class ParticipantJWKSView(RegistryView):
    @extend_schema(operation_id="participants_jwks", parameters=[ID_PARAMETER, *CACHE_HEADERS],
                   responses={200: JWKSetSerializer, **ONE_PARTICIPANT})
    def get(self, request: Request, participant_id: str) -> Response:
        def build():
            participant = self.get_participant(participant_id)
            keys = {"keys": [dict(key.public_jwk) for key in selectors.published_keys(participant)]}
            return keys, earliest_key_expiry([participant])

        return self.respond(request, build, self.participant_generation(participant_id))


class OcenParticipantRoleView(RegistryView):
    """OCEN reference-compatible view of one participant role."""

    @extend_schema(operation_id="ocen_participant_role", parameters=[ID_PARAMETER, *CACHE_HEADERS],
                   responses={200: OcenParticipantRoleSerializer, **ONE_PARTICIPANT})
    def get(self, request: Request, participant_id: str) -> Response:
        def build():
            participant = self.get_participant(participant_id)
            return OcenParticipantRoleSerializer(participant).data, earliest_key_expiry([participant])

        return self.respond(request, build, self.participant_generation(participant_id))
