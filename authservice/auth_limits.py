"""Limits on failed client authentication at the token, introspection and revocation
endpoints, shared by every worker and instance.

Failures are counted under two keys: the client's address, and the (client_id, address)
pair. Never under the client_id alone: then anyone who knows a participant's client_id
could lock the participant out. ``AUTH_FAILURE_LIMIT`` failures of one pair, or
``AUTH_FAILURE_LIMIT_PER_ADDRESS`` failures from one address whatever the client_id,
within ``AUTH_FAILURE_WINDOW`` seconds start a lockout of ``AUTH_LOCKOUT_SECONDS``.
While it lasts, that key's requests are refused with 429 before any secret is hashed
or any assertion verified.

A lockout has a fixed end. Refused requests are neither counted nor written, so a
flood during a lockout neither prolongs it nor loads the store; when it ends, the key
starts a fresh window. A persistent attacker gets at most ``AUTH_FAILURE_LIMIT``
guesses per key per lockout period, and operators get one ``LOCKOUT_AUDITOR`` call
(an audit event) and one log line per lockout, not one per guess. A success writes
nothing, so it resets no counter, its own or another address's.

Cost on the hot path: a successful request reads the lockout state of its two keys
once (one primary-key SELECT, or one Redis MGET) and writes nothing; only failures
write.

The store is Redis when ``settings.REDIS_URL`` is set (``SET NX EX`` then ``INCR`` in
one transaction; ``SET NX`` decides who starts a lockout), else the database
(``AuthFailureCounter``, ``UPDATE ... SET failures = failures + 1``), as for
``authservice.replay``: never a per-process cache.
"""

import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import redis
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.http import HttpRequest

from authservice.conf import authservice_settings
from authservice.models import AuthFailureCounter
from authservice.validator import basic_credentials
from ocen_sdk.jws import JWSError, peek_claims

logger = logging.getLogger(__name__)

PAIR = "client_at_address"
ADDRESS = "address"
# Recorded in audit events and logs as presented, so cut to the longest real client_id.
MAX_CLIENT_ID_CHARS = 100
MAX_ADDRESS_CHARS = 64
UNKNOWN_ADDRESS = "unknown"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Attempt:
    """One client authentication attempt: the client_id it presents (perhaps unknown or
    empty) and the client's address, with the two keys its failures count under."""

    client_id: str
    address: str
    endpoint: str
    pair_key: int
    address_key: int


@dataclass(frozen=True)
class Lockout:
    """A lockout that has just started, as told to ``AUTHSERVICE["LOCKOUT_AUDITOR"]``."""

    kind: str  # PAIR or ADDRESS
    client_id: str | None  # as presented, PAIR only; it may name no client at all
    address: str
    failures: int
    window_seconds: int
    locked_until: float  # epoch seconds
    endpoint: str

    @property
    def locked_until_iso(self) -> str:
        return datetime.fromtimestamp(self.locked_until, tz=UTC).isoformat(timespec="seconds")


def no_lockout_audit(*, lockout: Lockout) -> None:
    """The default ``LOCKOUT_AUDITOR``: the log line ``record_failure`` writes is all."""


# --- The client's address ---------------------------------------------------------------------

def _parsed_ip(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6] or [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(ip: IPAddress) -> bool:
    return any(ip in network for network in authservice_settings.TRUSTED_PROXIES)


def _label(ip: IPAddress) -> str:
    """The address failures count under. An IPv6 client usually holds a whole /64, so
    that is the unit; an IPv4-mapped IPv6 address is its IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip), 64), strict=False))  # int(): drops any %zone
    return str(ip)


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR; or, when that peer is a trusted proxy, the first address in
    X-Forwarded-For, read right to left, that is not a trusted proxy.

    Each proxy appends the peer it saw, so only the entries our own proxies appended
    can be believed: a malformed entry ends the walk at the last proxy we trust.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    peer = _parsed_ip(remote)
    if peer is None:
        return remote[:MAX_ADDRESS_CHARS] or UNKNOWN_ADDRESS
    client = peer
    if _trusted(peer):
        for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
            ip = _parsed_ip(hop)
            if ip is None:
                break
            client = ip
            if not _trusted(ip):
                break
    return _label(client)


# --- Attempts, lockouts and failures ------------------------------------------------------------

def _key(*parts: str) -> int:
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "backslashreplace")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _presented_client_id(request: HttpRequest, params: Mapping[str, str]) -> str:
    """The client_id the request claims, read without verifying anything."""
    basic = basic_credentials(request)
    if basic is not None:
        return basic[0]
    if params.get("client_id"):
        return params["client_id"]
    assertion = params.get("client_assertion")
    if not assertion:
        return ""
    try:
        issuer = peek_claims(assertion).get("iss")
    except JWSError:
        return ""
    return issuer if isinstance(issuer, str) else ""


def attempt_for(request: HttpRequest, params: Mapping[str, str]) -> Attempt:
    """The attempt ``request`` makes, given its form parameters."""
    client_id = _presented_client_id(request, params)
    address = client_address(request)
    return Attempt(client_id=client_id, address=address, endpoint=request.path,
                   pair_key=_key(PAIR, client_id, address), address_key=_key(ADDRESS, address))


def _store():
    return _RedisStore if getattr(settings, "REDIS_URL", "") else _DatabaseStore


def seconds_locked_out(attempt: Attempt) -> int:
    """0 if the attempt may proceed, else the whole seconds until its lockout ends."""
    now = time.time()
    until = _store().locked_until((attempt.pair_key, attempt.address_key), now)
    if until is None or until <= now:
        return 0
    return max(1, math.ceil(until - now))


def record_failure(attempt: Attempt) -> None:
    """Count a failed authentication under both keys; report every lockout it starts."""
    now = time.time()
    limits = {PAIR: authservice_settings.AUTH_FAILURE_LIMIT,
              ADDRESS: authservice_settings.AUTH_FAILURE_LIMIT_PER_ADDRESS}
    keys = {PAIR: attempt.pair_key, ADDRESS: attempt.address_key}
    started = _store().count_failures([(keys[kind], limits[kind]) for kind in (PAIR, ADDRESS)], now)
    for kind in (PAIR, ADDRESS):
        if keys[kind] in started:
            _report(Lockout(kind=kind, client_id=attempt.client_id[:MAX_CLIENT_ID_CHARS] if kind == PAIR else None,
                            address=attempt.address, failures=limits[kind],
                            window_seconds=authservice_settings.AUTH_FAILURE_WINDOW,
                            locked_until=started[keys[kind]], endpoint=attempt.endpoint))


def _report(lockout: Lockout) -> None:
    logger.warning("client authentication locked out: %s client_id=%r address=%s after %d failures, until %s",
                   lockout.kind, lockout.client_id, lockout.address, lockout.failures, lockout.locked_until_iso)
    try:
        authservice_settings.LOCKOUT_AUDITOR(lockout=lockout)
    except Exception:  # the lockout holds already; a failing auditor must not turn a 401 into a 500
        logger.exception("the lockout auditor failed")


def purge_expired_failures() -> int:
    """Delete counters whose window and lockout have both ended (database store)."""
    deleted, _ = AuthFailureCounter.objects.filter(window_ends_at__lt=time.time()).delete()
    return deleted


# --- Stores -----------------------------------------------------------------------------------

class _DatabaseStore:
    """``AuthFailureCounter`` rows. A lockout sets ``window_ends_at = locked_until`` and
    zeroes the count, so a row whose window has ended is never locked."""

    @staticmethod
    def locked_until(keys: tuple[int, int], now: float) -> float | None:
        quote = connection.ops.quote_name
        sql = (f"SELECT MAX({quote('locked_until')}) FROM {quote(AuthFailureCounter._meta.db_table)} "  # noqa: S608
               f"WHERE {quote('key')} IN (%s, %s) AND {quote('locked_until')} > %s")
        with connection.cursor() as cursor:
            cursor.execute(sql, [*keys, now])
            row = cursor.fetchone()
        return row[0] if row else None

    @classmethod
    def count_failures(cls, items: list[tuple[int, int]], now: float) -> dict[int, float]:
        """Count one failure under each (key, limit); {key: locked_until} of lockouts started."""
        until = now + authservice_settings.AUTH_LOCKOUT_SECONDS
        started = {}
        with transaction.atomic():
            for key, limit in items:
                cls._count(key, now)
                # Only an unlocked row may start a lockout: a failure that was already in
                # flight when the lockout began does not extend it.
                if (AuthFailureCounter.objects.filter(key=key, failures__gte=limit)
                        .exclude(locked_until__gt=now)
                        .update(failures=0, locked_until=until, window_ends_at=until)):
                    started[key] = until
        return started

    @staticmethod
    def _count(key: int, now: float) -> None:
        if AuthFailureCounter.objects.filter(key=key, window_ends_at__gt=now).update(failures=F("failures") + 1):
            return
        fresh = {"failures": 1, "window_ends_at": now + authservice_settings.AUTH_FAILURE_WINDOW,
                 "locked_until": None}
        if AuthFailureCounter.objects.filter(key=key, window_ends_at__lte=now).update(**fresh):
            return
        try:
            with transaction.atomic():
                AuthFailureCounter.objects.create(key=key, **fresh)
        except IntegrityError:  # another worker opened the window first
            AuthFailureCounter.objects.filter(key=key).update(failures=F("failures") + 1)


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    """One client, and so one connection pool, per process and URL: Django's cache builds
    a client per call, which cost more than the MGET it sends. A Redis that does not
    answer within a second is an error, not a hung request."""
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


class _RedisStore:
    """A counter that expires with its window, and a lock key that expires with the
    lockout. ``SET NX`` is atomic, so exactly one worker starts each lockout."""

    COUNTER = "authservice:authfail:"
    LOCK = "authservice:authlock:"

    @classmethod
    def locked_until(cls, keys: tuple[int, int], now: float) -> float | None:
        values = _redis(settings.REDIS_URL).mget([f"{cls.LOCK}{key}" for key in keys])
        return max((float(value) for value in values if value is not None), default=None)

    @classmethod
    def count_failures(cls, items: list[tuple[int, int]], now: float) -> dict[int, float]:
        client = _redis(settings.REDIS_URL)
        window = authservice_settings.AUTH_FAILURE_WINDOW
        lockout = authservice_settings.AUTH_LOCKOUT_SECONDS
        pipe = client.pipeline(transaction=True)
        for key, _ in items:
            pipe.set(f"{cls.COUNTER}{key}", 0, ex=window, nx=True)  # opens a window if none is open
            pipe.incr(f"{cls.COUNTER}{key}")
        counts = pipe.execute()[1::2]
        started = {}
        for (key, limit), failures in zip(items, counts, strict=True):
            if failures >= limit and client.set(f"{cls.LOCK}{key}", repr(now + lockout), ex=lockout, nx=True):
                client.delete(f"{cls.COUNTER}{key}")
                started[key] = now + lockout
        return started
