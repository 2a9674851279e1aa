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

Lockouts live in the database (``AuthFailureCounter.locked_until``), so they hold on
every instance at once and never depend on Redis durability. Failures are counted in
Redis when ``settings.REDIS_URL`` is set (``SET NX EX`` then ``INCR``, one round trip,
so an attack's writes go there), else, and whenever Redis fails to answer, in the
same rows (``UPDATE ... SET failures = failures + 1``); never in a per-process cache.
A lockout starts with one conditional ``UPDATE`` (or ``INSERT``), which exactly one
worker wins.

Cost on the hot path: no query of its own. The lockout state of the attempt's two keys
is a subquery of the query every request already makes, the presented client's
generation check (``authservice.clientcache``), which the endpoint then pins for the request. A
success writes nothing; only failures write.
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

from authservice.change_listener import listener
from authservice.clientcache import generation_sql, lookup_value
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
class Check:
    """What an endpoint learns before it authenticates anyone, in one query."""

    locked_for: int  # whole seconds until the attempt's lockout ends; 0: not locked out
    client_generation: int | None  # the presented client's, for authservice.clientcache.generation_pinned
    generation_read: bool = True  # False: the change feed is live, nothing was read


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
    client = client_ip(request)
    if client is None:
        return request.META.get("REMOTE_ADDR", "")[:MAX_ADDRESS_CHARS] or UNKNOWN_ADDRESS
    return _label(client)


def client_ip(request: HttpRequest) -> IPAddress | None:
    """The client's address as client_address finds it (unlabelled); None when
    REMOTE_ADDR is not an address."""
    peer = _parsed_ip(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return None
    client = peer
    if _trusted(peer):
        for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
            ip = _parsed_ip(hop)
            if ip is None:
                break
            client = ip
            if not _trusted(ip):
                break
    return client


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


def check(attempt: Attempt) -> Check:
    """Whether the attempt is locked out, and the presented client's generation, in one
    query; none while the change feed is live (``authservice.change_listener``) and has
    reported no lockout of the attempt's keys (every lockout that starts is reported)."""
    if listener.trusted() and listener.locked_until(attempt.pair_key, attempt.address_key) <= time.time():
        return Check(locked_for=0, client_generation=None, generation_read=False)
    # No feed, or it reported a lockout of these keys: the table decides (any role that
    # can connect to the database can NOTIFY, so a notice is a hint, never proof).
    quote = connection.ops.quote_name
    # One primary-key lookup per key: cheaper to plan than MAX(...) WHERE key IN (...).
    lookup = (f"(SELECT {quote('locked_until')} FROM {quote(AuthFailureCounter._meta.db_table)} "  # noqa: S608
              f"WHERE {quote('key')} = %s)")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ({generation_sql()}), {lookup}, {lookup}",
                       [lookup_value(attempt.client_id), attempt.pair_key, attempt.address_key])
        generation, *locked_until = cursor.fetchone()
    until = max((value for value in locked_until if value is not None), default=0.0)
    return Check(locked_for=_seconds_until(until), client_generation=generation)


def _seconds_until(until: float) -> int:
    now = time.time()
    return max(1, math.ceil(until - now)) if until > now else 0


def record_failure(attempt: Attempt) -> None:
    """Count a failed authentication under both keys; report every lockout it starts."""
    now = time.time()
    limits = {PAIR: authservice_settings.AUTH_FAILURE_LIMIT,
              ADDRESS: authservice_settings.AUTH_FAILURE_LIMIT_PER_ADDRESS}
    keys = {PAIR: attempt.pair_key, ADDRESS: attempt.address_key}
    items = [(keys[kind], limits[kind]) for kind in (PAIR, ADDRESS)]
    started = _count_failures(items, now)
    for kind in (PAIR, ADDRESS):
        if keys[kind] in started:
            listener.lockout_started_here(keys[kind], started[keys[kind]])  # the others hear it from PostgreSQL
            _report(Lockout(kind=kind, client_id=attempt.client_id[:MAX_CLIENT_ID_CHARS] if kind == PAIR else None,
                            address=attempt.address, failures=limits[kind],
                            window_seconds=authservice_settings.AUTH_FAILURE_WINDOW,
                            locked_until=started[keys[kind]], endpoint=attempt.endpoint))


def _count_failures(items: list[tuple[int, int]], now: float) -> dict[int, float]:
    """In Redis when it is configured and answers, else in the database: a failure is
    always counted, so an outage never gives unlimited guessing (nor a 503 that hides
    which guess was right)."""
    if not getattr(settings, "REDIS_URL", ""):
        return _DatabaseCounter.count_failures(items, now)
    try:
        return _RedisCounter.count_failures(items, now)
    except redis.RedisError as exc:
        _log_redis_fallback(exc)
        return _DatabaseCounter.count_failures(items, now)


_fallback_logged_at = {"at": float("-inf")}


def _log_redis_fallback(exc: Exception) -> None:
    now = time.monotonic()
    if now - _fallback_logged_at["at"] >= 60:
        _fallback_logged_at["at"] = now
        logger.warning("Redis unavailable (%s): failed client authentications are counted in the database",
                       type(exc).__name__)


def _report(lockout: Lockout) -> None:
    logger.warning("client authentication locked out: %s client_id=%r address=%s after %d failures, until %s",
                   lockout.kind, lockout.client_id, lockout.address, lockout.failures, lockout.locked_until_iso)
    try:
        authservice_settings.LOCKOUT_AUDITOR(lockout=lockout)
    except Exception:  # the lockout holds already; a failing auditor must not turn a 401 into a 500
        logger.exception("the lockout auditor failed")


def purge_expired_failures() -> int:
    """Delete rows whose window and lockout have both ended."""
    deleted, _ = AuthFailureCounter.objects.filter(window_ends_at__lt=time.time()).delete()
    return deleted


# --- Counting ---------------------------------------------------------------------------------

class _DatabaseCounter:
    """Counts in the rows that also hold the lockouts. A lockout sets ``window_ends_at =
    locked_until`` and zeroes the count, so a row whose window has ended is never locked."""

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
    """One client, and so one connection pool, per process and URL (Django's cache builds
    a client per call). A Redis that does not answer within a second is an error, not a
    hung request."""
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


class _RedisCounter:
    """Counters that expire with their window; the lockouts they start go to the database."""

    PREFIX = "authservice:authfail:"

    @classmethod
    def prefix(cls) -> str:
        """Under the cache's KEY_PREFIX (CACHE_KEY_PREFIX), as the cache's own keys are."""
        key_prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        return f"{key_prefix}:{cls.PREFIX}" if key_prefix else cls.PREFIX

    @classmethod
    def count_failures(cls, items: list[tuple[int, int]], now: float) -> dict[int, float]:
        client = _redis(settings.REDIS_URL)
        prefix = cls.prefix()
        window = authservice_settings.AUTH_FAILURE_WINDOW
        until = now + authservice_settings.AUTH_LOCKOUT_SECONDS
        pipe = client.pipeline(transaction=True)
        for key, _ in items:
            pipe.set(f"{prefix}{key}", 0, ex=window, nx=True)  # opens a window if none is open
            pipe.incr(f"{prefix}{key}")
        counts = pipe.execute()[1::2]
        started = {}
        for (key, limit), failures in zip(items, counts, strict=True):
            if failures >= limit and cls._start_lockout(key, now, until):
                client.delete(f"{prefix}{key}")
                started[key] = until
        return started

    @staticmethod
    def _start_lockout(key: int, now: float, until: float) -> bool:
        """Lock ``key`` out unless it is locked out already; True if this call did."""
        fields = {"failures": 0, "window_ends_at": until, "locked_until": until}
        if AuthFailureCounter.objects.filter(key=key).exclude(locked_until__gt=now).update(**fields):
            return True
        try:
            with transaction.atomic():
                AuthFailureCounter.objects.create(key=key, **fields)
        except IntegrityError:  # a lockout is running, or another worker just started it
            return False
        return True
