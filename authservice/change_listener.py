"""Changes pushed by PostgreSQL, so the token endpoint needs no query per request.

Without it, every token request reads the presented client's generation and the
lockout state of its two keys (one small query, ``auth_limits.check``), which is how a
suspension or a lockout made through any worker takes effect on the very next request
in every other. Measured on 2 cores (bench/), that query was about 190 µs of the
worker's CPU per request, a third of the endpoint's own work, plus PostgreSQL's.

With it, each serving process keeps one extra connection that ``LISTEN``\\ s on
``CHANNEL``. Triggers (migration ``authservice.0009``) ``NOTIFY`` every change to a
client row (any column: secret, activity, generation, deletion, creation) and every
lockout that starts, inside the writing transaction, so PostgreSQL delivers each
notice when, and only if, the change commits. The listener drops that client's
cached record, or records the lockout, and requests trust the process's own state:
no query on a cached client.

What keeps it exact:

- **Trusted only while the feed is shown to deliver.** Every ``HEARTBEAT`` seconds the
  listener sends a canary: a ``NOTIFY`` with a fresh random payload, from a second
  session, as a writer would. PostgreSQL delivers a channel's notices in commit order,
  so when the canary arrives every change committed before it was sent has been
  applied; requests then trust the cache until ``TRUST_WINDOW`` after the canary was
  sent. A connection that answers queries is no proof: a transaction pooler
  (PgBouncer in transaction mode) accepts ``LISTEN`` and never delivers a notice, and
  there the canary never arrives, so the token endpoint reads the state on every
  request. A silently dead path is trusted for at most ``TRUST_WINDOW``.
- **A new session revalidates what was cached.** Notices sent while no session
  listened are lost, so each (re)connection starts a new epoch: a record cached in an
  earlier epoch is used again only after one generation check (a small indexed query),
  never blindly, and never reloaded whole. Running lockouts are reloaded *after*
  ``LISTEN`` is in place.
- **No stale record stored after its notice.** A request that loads a client records
  the listener's sequence number first; it stores the record only if no notice (and
  no reconnection) arrived meanwhile, under the lock the listener applies notices
  with.
- **In the writing process, at once.** The process that commits a change drops the
  client's record itself on commit, so its next request never waits for the notice.

The delay between a commit and every other worker's listener applying it is the
bound on "at once" across processes: a millisecond or two on one host (measured by
``tests/test_change_listener.py`` and ``make cluster``). A listener thread waits for
the GIL like any other, so a busy worker may apply a notice up to one switch
interval (5 ms) later.

Started in each serving process by ``authservice.wsgi`` (each granian worker imports
it); never in tests or management commands unless started explicitly.
``AUTHSERVICE_PUSHED_INVALIDATION=0`` turns it off (every request queries again): do
so behind a transaction pooler, where the canary shows the feed cannot work (the
listener then retries less and less often, and says so once in the log). SQLite has
no LISTEN: the embedded default always queries.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import connection, transaction

from authservice.observability import CHANGE_FEED_EVENTS, CHANGE_FEED_LIVE

logger = logging.getLogger(__name__)

CHANNEL = "authservice_changes"
HEARTBEAT = 0.5  # seconds between canaries
TRUST_WINDOW = 1.0  # seconds the cache is trusted after the last canary that arrived was sent
RECONNECT_DELAY = 0.5
# Canaries missed in a row before the sessions are replaced (a path that delivers nothing);
# each further replacement waits twice as long, up to MAX_RECONNECT_DELAY.
MISSED_CANARIES_BEFORE_RECONNECT = 6
MAX_RECONNECT_DELAY = 60.0
CLIENT_PREFIX = "c:"
LOCKOUT_PREFIX = "l:"
CANARY_PREFIX = "h:"
APPLICATION_NAME = "authservice-change-listener"  # how its connection shows in pg_stat_activity


class ChangeListener:
    """One per serving process. Thread-safe: the listener thread applies notices, the
    request threads read the state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process the thread runs in (a fork has none)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._trusted_until = 0.0
        self.sequence = 0  # bumped by every notice and reconnection
        self.epoch = 0  # bumped by every (re)connection: notices may have been lost before it
        self.lockouts: dict[int, float] = {}  # key -> locked_until (epoch seconds)
        self.forget_client: Callable[[str], None] = lambda client_id: None
        self.connections = 0
        self.canaries = 0  # canaries that came back
        self._missed = 0  # canaries missed in a row
        self._reconnect_delay = RECONNECT_DELAY

    # --- what requests ask --------------------------------------------------------------------

    def trusted(self) -> bool:
        """Whether this process's cached clients and lockouts are known to be current."""
        return self._pid == os.getpid() and time.monotonic() < self._trusted_until

    def locked_until(self, *keys: int) -> float:
        lockouts = self.lockouts
        return max((lockouts.get(key, 0.0) for key in keys), default=0.0)

    def store_if_current(self, sequence: int, store: Callable[[], None]) -> bool:
        """Run ``store`` (put a loaded record in the cache) unless a notice or a
        reconnection arrived since ``sequence`` was read."""
        with self._lock:
            if sequence != self.sequence:
                return False
            store()
            return True

    # --- what writers tell it (in the writing process) ----------------------------------------

    def clients_changed_here(self, client_ids: Iterable[str]) -> None:
        """Drop these clients' records once the current transaction commits (the notice
        does the same in every other process)."""
        client_ids = list(client_ids)

        def forget() -> None:
            with self._lock:
                self.sequence += 1
                for client_id in client_ids:
                    self.forget_client(client_id)

        transaction.on_commit(forget)

    def lockout_started_here(self, key: int, until: float) -> None:
        with self._lock:
            self.lockouts[key] = max(self.lockouts.get(key, 0.0), until)

    # --- the listening thread -----------------------------------------------------------------

    def start(self) -> bool:
        """Start listening in this process (again after a fork); False when the database
        cannot push changes (not PostgreSQL) or it is turned off."""
        if not enabled():
            return False
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return True
        self._pid = os.getpid()
        self._trusted_until = 0.0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="authservice-change-listener", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._trusted_until = 0.0
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._pid = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except _NoDelivery:
                self._distrust("no canary came back")
            except Exception as exc:  # any failure means: stop trusting, reconnect
                self._distrust(f"{type(exc).__name__}: {exc}")
                self._reconnect_delay = RECONNECT_DELAY
            self._stop.wait(self._reconnect_delay)
        CHANGE_FEED_LIVE.set(0)

    def _distrust(self, why: str) -> None:
        was_trusted = self._trusted_until > time.monotonic()
        self._trusted_until = 0.0
        CHANGE_FEED_LIVE.set(0)
        CHANGE_FEED_EVENTS.labels("disconnect").inc()
        if was_trusted:
            logger.warning("change feed lost (%s); token requests query the database until it is back", why)

    def _connection_params(self) -> dict:
        params = connection.get_connection_params()
        for name in ("pool", "cursor_factory", "context"):
            params.pop(name, None)
        params["application_name"] = APPLICATION_NAME
        return params

    def _listen(self) -> None:
        import psycopg

        params = self._connection_params()
        with psycopg.connect(**params, autocommit=True) as conn, \
                psycopg.connect(**params, autocommit=True) as canary:
            conn.execute(f"LISTEN {CHANNEL}")
            lockouts = self._running_lockouts(conn)
            with self._lock:  # what was cached before LISTEN may have missed a notice
                self.sequence += 1
                self.epoch += 1
                self.lockouts = lockouts
            self.connections += 1
            self._missed = 0
            CHANGE_FEED_EVENTS.labels("connect").inc()
            while not self._stop.is_set():
                self._beat(conn, canary)
                self._prune_lockouts()

    def _beat(self, conn, canary) -> None:
        """Send a canary and apply notices for one heartbeat; trust is extended only
        when the canary comes back through the listening session."""
        payload = f"{CANARY_PREFIX}{os.getpid()}:{secrets.token_hex(8)}"
        sent_at = time.monotonic()
        canary.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
        arrived = False
        deadline = sent_at + HEARTBEAT
        while (remaining := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            for notice in conn.notifies(timeout=remaining, stop_after=1):
                if notice.payload == payload:
                    arrived = True
                    self._canary_arrived(sent_at)
                elif not notice.payload.startswith(CANARY_PREFIX):  # another worker's canary: nothing to do
                    self._apply(notice.payload)
        if arrived:
            self._missed = 0
            return
        self._missed += 1
        CHANGE_FEED_EVENTS.labels("canary_missed").inc()
        if self._missed >= MISSED_CANARIES_BEFORE_RECONNECT:
            if self._reconnect_delay <= RECONNECT_DELAY:
                logger.warning("change feed: %d canaries in a row did not come back (a transaction pooler such as "
                               "PgBouncer delivers no notice; set AUTHSERVICE_PUSHED_INVALIDATION=0 there): token "
                               "requests query the database", self._missed)
            self._reconnect_delay = min(MAX_RECONNECT_DELAY, max(self._reconnect_delay * 2, 1.0))
            raise _NoDelivery

    def _canary_arrived(self, sent_at: float) -> None:
        if self._trusted_until <= time.monotonic() and self.canaries:
            logger.info("change feed back; token requests trust the process cache again")
        self.canaries += 1
        self._reconnect_delay = RECONNECT_DELAY
        self._trusted_until = sent_at + TRUST_WINDOW
        CHANGE_FEED_LIVE.set(1)
        CHANGE_FEED_EVENTS.labels("canary").inc()

    @staticmethod
    def _running_lockouts(conn) -> dict[int, float]:
        from authservice.models import AuthFailureCounter

        table = AuthFailureCounter._meta.db_table
        rows = conn.execute(f'SELECT "key", locked_until FROM "{table}" WHERE locked_until > %s',  # noqa: S608
                            [time.time()]).fetchall()
        return {key: until for key, until in rows}

    def _apply(self, payload: str) -> None:
        CHANGE_FEED_EVENTS.labels("notice").inc()
        with self._lock:
            self.sequence += 1
            if payload.startswith(CLIENT_PREFIX):
                self.forget_client(payload[len(CLIENT_PREFIX):])
            elif payload.startswith(LOCKOUT_PREFIX):
                key, _, until = payload[len(LOCKOUT_PREFIX):].partition(":")
                try:
                    key_value, until_value = int(key), float(until)
                except ValueError:
                    logger.warning("change feed: unreadable notice %r", payload[:200])
                    return
                self.lockouts[key_value] = max(self.lockouts.get(key_value, 0.0), until_value)

    def _prune_lockouts(self) -> None:
        now = time.time()
        if any(until <= now for until in self.lockouts.values()):
            with self._lock:
                self.lockouts = {key: until for key, until in self.lockouts.items() if until > now}


def enabled() -> bool:
    return (connection.vendor == "postgresql"
            and getattr(settings, "AUTHSERVICE_PUSHED_INVALIDATION", True))


class _NoDelivery(Exception):
    """The listening session answers, but delivers no notice (not even our own)."""


listener = ChangeListener()
