"""The gunicorn worker class `gunicorn.conf.py` uses (imported by gunicorn, not by Django)."""

import errno
import time
import traceback

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn, ThreadWorker

from authservice.access_line import ACCESS_LOG_FORMAT, access_line

__all__ = ["ACCESS_LOG_FORMAT", "AccessLogger", "BalancedThreadWorker"]


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, with two changes measured in bench/rounds.py and scripts/faults.py:

    - A worker whose threads are all busy lets a waiting connection go to another
      worker first: it stops listening for ``ACCEPT_DELAY`` seconds, then accepts it
      anyway if nobody else did. Stock gthread accepts whatever arrives while its
      threads are busy, so under keep-alive load one worker often took every connection
      and the others none (wrk -c8: 8 and 0, half the throughput). A first version
      refused connections for as long as every thread was busy: under steady load a
      worker's threads are almost never free at the moment it looks, so late
      connections waited in the kernel's queue for up to 2 s (bench: p99 0.1 to 1.4 s
      against 8 ms, and wrk timeouts). The bounded delay keeps the spreading and caps
      that wait.
    - On SIGTERM, the connections already queued on the listening socket are accepted
      and answered (with "Connection: close") before the worker lets go of the socket;
      stock gthread left them queued, and the kernel reset them when the last worker
      closed the socket.
    """

    ACCEPT_DELAY = 0.005  # seconds a busy worker leaves a new connection to the others
    busy = 0
    _paused_until = 0.0
    _deferred_since: float | None = None

    @property
    def worker_connections(self):
        # The run loop accepts while nr_conns < worker_connections: lower the bound to the
        # current count while this worker, busy, leaves new connections to the others.
        paused = self.busy >= self.cfg.threads and time.monotonic() < self._paused_until
        return min(self._connection_cap, self.nr_conns) if paused else self._connection_cap

    @worker_connections.setter
    def worker_connections(self, value):
        self._connection_cap = value

    def accept(self, listener):
        if self.busy >= self.cfg.threads and self.alive:
            now = time.monotonic()
            if self._deferred_since is None or now - self._deferred_since > self.ACCEPT_DELAY + 0.05:
                self._deferred_since = now  # a new wait (an older one ended: another worker took it)
            if now - self._deferred_since < self.ACCEPT_DELAY:
                self._paused_until = self._deferred_since + self.ACCEPT_DELAY
                self.set_accept_enabled(False)  # until the pause ends (see wait_for_and_dispatch_events)
                return
        self._deferred_since = None
        super().accept(listener)

    def wait_for_and_dispatch_events(self, timeout):
        remaining = self._paused_until - time.monotonic()
        if remaining > 0:
            timeout = min(timeout, remaining)  # wake when the pause ends, to accept what still waits
        super().wait_for_and_dispatch_events(timeout)

    def enqueue_req(self, conn):
        self.busy += 1
        super().enqueue_req(conn)

    def finish_request(self, conn, fs):
        self.busy -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            self._drain_listeners()

    def _drain_listeners(self):
        for listener in self.sockets:
            listener.setblocking(False)
            while True:
                try:
                    client_sock, client_addr = listener.accept()
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                        break
                    raise
                self.nr_conns += 1
                client_sock.setblocking(True)
                self.enqueue_req(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))
            listener.close()


class AccessLogger(Logger):
    """gunicorn's logger, writing the project's access line (``ACCESS_LOG_FORMAT``) directly.

    gunicorn's own ``access()`` first builds a dict of every atom, request header,
    response header and WSGI environ variable, then escapes each value, for every
    request: about 50 µs of the token endpoint's ~900 µs per request (bench/). The line
    is the same (``tests/ops/test_balanced_worker.py`` compares them); any other
    ``access_log_format`` is left to gunicorn.
    """

    _second = -1
    _stamp = ""

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            return super().access(resp, req, environ, request_time)
        second = int(time.time())
        if second != self._second:  # gunicorn's timestamp has whole seconds
            self._stamp, self._second = self.now(), second
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        line = access_line(environ, self._stamp, status, getattr(resp, "sent", None),
                           f"{request_time.seconds}.{request_time.microseconds:06d}")
        try:
            self.access_log.info(line)
        except Exception:
            self.error(traceback.format_exc())
