"""Used client-assertion ids survive the loss of everything Redis held (restart, flush, eviction)."""

from datetime import timedelta

from django.utils import timezone

from authservice.models import UsedNonce
from authservice.replay import claim_once
from tests.test_support import clear_cache


def test_a_used_id_stays_used_when_the_cache_is_emptied(db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # configured (and unreachable): never consulted for replays
    expires = timezone.now() + timedelta(minutes=5)
    assert claim_once("client_assertion", "client:jti-1", expires_at=expires)
    clear_cache()  # what FLUSHALL or a restart without persistence does to Redis (this run's keys)
    assert not claim_once("client_assertion", "client:jti-1", expires_at=expires)
    assert UsedNonce.objects.count() == 1
    assert claim_once("client_assertion", "client:jti-2", expires_at=expires)
