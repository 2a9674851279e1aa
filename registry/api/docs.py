"""The API documentation pages, served entirely from this host.

drf-spectacular's sidecar ships Swagger UI and ReDoc as static files. ReDoc's
bundle still draws its side-menu logo from its vendor's CDN, unconditionally, so
ReDoc's bundle is served through ``redoc_bundle``: the sidecar's file with that one
address pointed at a local image, built once per process and revalidated by ETag.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularRedocView

SIDECAR_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
VENDOR_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
LOCAL_LOGO = "registry/api/docs-logo.svg"


@lru_cache(maxsize=1)
def _local_bundle() -> tuple[bytes, str] | None:
    path = finders.find(SIDECAR_BUNDLE)
    if not path:
        return None
    body = Path(path).read_bytes().replace(VENDOR_LOGO, static(LOCAL_LOGO).encode())
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


@require_safe
def redoc_bundle(request: HttpRequest) -> HttpResponse:
    bundle = _local_bundle()
    if bundle is None:
        raise Http404("ReDoc's bundle is not installed (drf-spectacular-sidecar)")
    body, etag = bundle
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(body, content_type="application/javascript; charset=utf-8")
    response["ETag"] = etag
    response["Cache-Control"] = "public, max-age=86400"
    return response


class LocalRedocView(SpectacularRedocView):
    """drf-spectacular's ReDoc page, with the bundle from ``redoc_bundle``."""

    @staticmethod
    def _redoc_standalone() -> str:
        return reverse("registry-api:redoc-bundle")
