"""One-time use of values such as client-assertion jtis, shared by every worker and instance.

A unique row in the database decides, with or without Redis: Redis may lose what it
holds (a restart without persistence, FLUSHALL, eviction), and a used id it forgot
would be accepted again (scripts/faults.py replays an assertion after each). One
primary-key insert per use; a Redis outage does not touch it. The local-memory cache
is never trusted here either: it is per process.
"""

import hashlib
import uuid
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from authservice.models import UsedNonce


def claim_once(namespace: str, value: str, *, expires_at: datetime) -> bool:
    """True the first time (namespace, value) is seen before ``expires_at``; False on replay."""
    key = uuid.UUID(bytes=hashlib.sha256(f"{namespace}\x00{value}".encode()).digest()[:16])
    try:
        with transaction.atomic():
            UsedNonce.objects.create(key=key, expires_at=expires_at)
    except IntegrityError:
        return UsedNonce.objects.filter(key=key, expires_at__lt=timezone.now()).update(
            expires_at=expires_at) == 1  # an expired record may be reused
    return True


def purge_expired_nonces() -> int:
    deleted, _ = UsedNonce.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted


def provider_replay_store(key: str, ttl: int) -> bool:
    """``OCEN_PROVIDER["REPLAY_STORE"]`` for a provider running inside this project: used
    signed-request ids shared by every worker and instance (in the database)."""
    return claim_once("provider_request", key, expires_at=timezone.now() + timedelta(seconds=ttl))
