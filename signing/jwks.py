"""The service's JWKS document: the public halves of its published keys (next, active,
and retired ones whose tokens may still live), oldest first."""

import logging
import time
from dataclasses import dataclass

from django.db import DatabaseError

from signing.conf import signing_settings
from signing.models import SigningKey

logger = logging.getLogger(__name__)


@dataclass
class _Document:
    value: dict | None = None
    loaded_at: float = float("-inf")


_document = _Document()


def published_jwks() -> dict:
    """The JWKS document, re-read at most every SIGNER_CACHE_SECONDS. While the database
    is unreachable the last document read is served: verifiers keep working through
    an outage (the keys themselves cannot change while nothing can write them)."""
    now = time.monotonic()
    if now - _document.loaded_at < signing_settings.SIGNER_CACHE_SECONDS:
        return _document.value
    try:
        document = {"keys": [row.public_jwk for row in SigningKey.objects.published().order_by("created_at")]}
    except DatabaseError:
        if _document.value is None:
            raise
        logger.warning("JWKS: database unreachable, serving the keys read %.0fs ago", now - _document.loaded_at)
        return _document.value
    _document.value, _document.loaded_at = document, now
    return document


def forget() -> None:
    """Drop the document read last: the next call reads the database."""
    _document.value, _document.loaded_at = None, float("-inf")
