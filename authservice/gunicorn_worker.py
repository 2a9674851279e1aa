"""The gunicorn worker class `gunicorn.conf.py` uses (imported by gunicorn, not by Django)."""

import errno

from gunicorn.workers.gthread import TConn, ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, with two changes measured in bench/rounds.py and scripts/faults.py:

    - A worker accepts a new connection only while one of its threads is free. Stock
      gthread accepts whatever arrives while its threads are busy, so under keep-alive
      load one worker often took every connection and the others none (wrk -c8: 8 and
      0, half the throughput). Now a connection waits in the kernel's queue for a worker
      that can serve it, and long-lived connections spread over every worker.
    - On SIGTERM, the connections already queued on the listening socket are accepted
      and answered (with "Connection: close") before the worker lets go of the socket;
      stock gthread left them queued, and the kernel reset them when the last worker
      closed the socket.
    """

    busy = 0

    @property
    def worker_connections(self):
        # The run loop accepts while nr_conns < worker_connections: lower the bound to the
        # current count while no thread is free.
        return self._connection_cap if self.busy < self.cfg.threads else min(self._connection_cap, self.nr_conns)

    @worker_connections.setter
    def worker_connections(self, value):
        self._connection_cap = value

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
