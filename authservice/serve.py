"""Serve the service with gunicorn or granian, from the same settings (``python -m authservice.serve``).

``AUTHSERVICE_SERVER`` chooses: ``granian`` (the default) runs granian's WSGI server
(a Rust HTTP layer: about a sixth less CPU per token request than gunicorn's, and
slow clients hold no Python thread) in this process, configured from the
``GUNICORN_*`` variables and carrying over what gunicorn.conf.py does; ``gunicorn``
runs exactly ``gunicorn authservice.wsgi --config gunicorn.conf.py`` (exec). Under
granian:

- ``GUNICORN_BIND`` (``host:port``, ``[v6]:port`` or ``unix:/path``), ``GUNICORN_WORKERS``
  (one per core), ``GUNICORN_THREADS`` (Python threads per worker), ``GUNICORN_ACCESS_LOG``;
- Prometheus multiprocess metrics: ``PROMETHEUS_MULTIPROC_DIR`` (default
  ``$AUTHSERVICE_VAR_DIR/metrics``) set, locked against another running server, and
  emptied before the workers start; a worker
  that exits marks its live gauges dead (one killed outright is swept at the next
  scrape: authservice.observability);
- the token activity counters flushed when a worker exits (registry.activity), as
  gunicorn's ``worker_exit`` hook does;
- gunicorn's access line (authservice.access_line: no query string, so a secret put in
  a URL is never logged);
- gunicorn's request-line and header-field limits (414, 431);
- keep-alive (30 s to send the next request's headers, as gunicorn's ``keepalive``),
  HTTP/1 only (what gunicorn speaks: no cleartext HTTP/2), no control socket;
- SIGTERM (or SIGINT) to the main process: the workers stop accepting at once, answer
  with ``Connection: close`` for ``AUTHSERVICE_DRAIN_SECONDS`` (default 1) so that no
  kept-alive connection is closed under a client's request, then finish what they
  hold and are killed after 20 s (gunicorn's ``graceful_timeout``); a worker that
  dies is replaced; SIGHUP replaces each worker in turn, each old one drained alone
  the same way once its replacement listens.

An optional argument names another WSGI application (``module`` or ``module:attr``),
for tests.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import shutil
import socket
import stat
import sys
import threading
import time
from pathlib import Path

from authservice.access_line import Stamp, access_line

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("gunicorn", "granian")
DEFAULT_SERVER = "granian"
DEFAULT_APP = "authservice.wsgi:application"
# gunicorn.conf.py's timings, for granian.
KEEPALIVE_SECONDS = 30
GRACEFUL_TIMEOUT_SECONDS = 20
BACKLOG = 2048  # gunicorn's default
# On SIGTERM (or SIGINT) to granian's main process, the workers stop accepting and answer
# every request with "Connection: close" for this long before granian stops them
# (AUTHSERVICE_DRAIN_SECONDS; see _draining_server_class).
DEFAULT_DRAIN_SECONDS = 1.0


def drain_seconds(environ=os.environ) -> float:
    value = environ.get("AUTHSERVICE_DRAIN_SECONDS", "").strip()
    try:
        seconds = float(value) if value else DEFAULT_DRAIN_SECONDS
    except ValueError:
        raise SystemExit(f"AUTHSERVICE_DRAIN_SECONDS={value!r}: a number of seconds") from None
    if not 0 <= seconds <= 60:
        raise SystemExit(f"AUTHSERVICE_DRAIN_SECONDS={value!r}: between 0 and 60 seconds")
    return seconds
# The access line is written by the worker's WSGI wrapper (gunicorn's line: authservice.access_line)
# to granian's access logger (stdout), not by granian.
ACCESS_LOGGER = "granian.access"
# Settings read once at start-up that must not reach a request: granian copies the whole
# process environment into every WSGI environ (request.META); gunicorn does not.
SECRET_VARIABLES = ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "AUTHSERVICE_KEY_ENCRYPTION_KEY",
                    "AUTHSERVICE_AUDIT_KEY")
_APP_VARIABLE = "AUTHSERVICE_SERVE_APP"
_DRAIN_FILE_VARIABLE = "AUTHSERVICE_SERVE_DRAIN_FILE"
_DRAIN_SLOT_VARIABLE = "AUTHSERVICE_SERVE_DRAIN_SLOT"


def chosen_server(environ=os.environ) -> str:
    server = environ.get("AUTHSERVICE_SERVER", DEFAULT_SERVER).strip().lower() or DEFAULT_SERVER
    if server not in SERVERS:
        raise SystemExit(f"AUTHSERVICE_SERVER={server!r}: choose one of {', '.join(SERVERS)}")
    return server


def metrics_dir(environ=os.environ) -> str:
    return environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(environ.get("AUTHSERVICE_VAR_DIR", "var"),
                                                                   "metrics")


def parse_bind(bind: str) -> dict:
    """gunicorn's bind syntax, as granian's address/port or uds arguments."""
    if bind.startswith("unix:"):
        return {"uds": Path(bind[len("unix:"):])}
    host, _, port = bind.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"GUNICORN_BIND={bind!r}: expected host:port or unix:/path")
    return {"address": host.strip("[]") or "0.0.0.0", "port": int(port)}  # noqa: S104 - gunicorn's meaning of ":8000"


def serve_gunicorn(app: str) -> None:
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    os.chdir(ROOT)
    os.execv(gunicorn, [gunicorn, app.removesuffix(":application"), "--config",  # noqa: S606 - becomes gunicorn
                        str(ROOT / "gunicorn.conf.py")])


def granian_server(app: str, environ=os.environ):
    """granian's server object for the settings in ``environ`` (not started)."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    if environ.get("GUNICORN_MAX_REQUESTS", "0") not in ("", "0"):
        print("GUNICORN_MAX_REQUESTS has no granian equivalent: ignored", file=sys.stderr)
    server_class = _draining_server_class()
    server_class.drain_seconds = drain_seconds(environ)
    return server_class(
        "authservice.serve:worker_application",
        factory=True,
        interface=Interfaces.WSGI,
        **parse_bind(environ.get("GUNICORN_BIND", "127.0.0.1:8000")),
        workers=int(environ.get("GUNICORN_WORKERS", str(os.cpu_count() or 2))),
        blocking_threads=int(environ.get("GUNICORN_THREADS", "1")),
        http=HTTPModes.http1,
        websockets=False,
        backlog=BACKLOG,
        http1_settings=HTTP1Settings(header_read_timeout=KEEPALIVE_SECONDS * 1000, keep_alive=True),
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_TIMEOUT_SECONDS,
        working_dir=ROOT,
    )


def _draining_server_class():
    """granian's multiprocess server, draining kept-alive connections before it stops.

    granian's workers, told to stop, close every idle kept-alive connection at once: a
    client that sent its next request on one at that moment gets no answer (the faults
    smoke's "SIGTERM under load" row failed that way; 4 runs in 15 of its load here).
    So on SIGTERM or SIGINT the main process first raises the drain flag (DrainFlag);
    each worker then stops accepting and, for ``drain_seconds``, answers every request
    with ``Connection: close`` (WorkerDrain), so each client in the middle of a
    kept-alive exchange is told to stop using its connection by the response it gets;
    only then are the workers stopped (0 runs in 20 with a reset). A worker signalled
    directly (the whole process group at once) stops at once, as granian's do.

    SIGHUP (granian's graceful reload: each worker in turn replaced by a new one) drains
    each old worker alone, through its own byte of the flag, once its replacement
    listens (stock granian lost 5 requests in 4 reloads under keep-alive load here, and
    stopped the old worker 3.5 s after starting the new one, listening or not).
    Under ``unix:`` the old worker closes its connections the same way but cannot stop
    accepting: the socket is shared by every worker, old and new.
    """
    from granian.server import Server

    class DrainingServer(Server):
        drain: DrainFlag | None = None
        drain_seconds = DEFAULT_DRAIN_SECONDS
        reloading = False
        spawned = 0
        # How long an old worker waits for its replacement to listen before it drains anyway.
        READY_TIMEOUT_SECONDS = 30.0

        def startup(self, spawn_target, target_loader):
            self.slots, self.newest = {}, {}  # slot -> worker; worker index -> its newest slot
            # In the metrics directory, emptied at every start: a flag left by a killed server goes.
            self.drain = DrainFlag.create(Path(metrics_dir()))
            os.environ[_DRAIN_FILE_VARIABLE] = str(self.drain.path)
            super().startup(spawn_target, target_loader)

        def _spawn_worker(self, idx, target, callback_loader):
            # granian starts (forks) each worker just after this returns, on every path
            # (start, reload, respawn): it inherits its slot through the environment.
            worker = super()._spawn_worker(idx, target, callback_loader)
            if self.drain is None:
                return worker
            held = {slot for slot, other in self.slots.items() if other.is_alive()}
            while (slot := DrainFlag.slot_for(self.spawned)) in held:
                self.spawned += 1
            self.spawned += 1
            self.slots = {kept: other for kept, other in self.slots.items() if kept in held}
            self.slots[slot] = worker
            self.newest[idx] = slot
            self.drain.lower(slot)
            os.environ[_DRAIN_SLOT_VARIABLE] = str(slot)
            stop = worker.terminate

            def drain_then_terminate():
                if self.reloading and worker.is_alive():
                    # A worker that exits while it drains was stopped by us, not crashed.
                    worker.interrupt_by_parent = True
                    self._wait_until_listening(self.slots.get(self.newest.get(idx, slot)), idx)
                    if self.drain_seconds:
                        logging.getLogger("_granian").info(
                            "Draining old worker-%d for %.1f s", idx + 1, self.drain_seconds)
                        self.drain.raise_(slot)
                        time.sleep(self.drain_seconds)
                stop()

            worker.terminate = drain_then_terminate
            return worker

        def _wait_until_listening(self, replacement, idx):
            """Until ``replacement`` (the new worker-``idx``) listens on the bind port, so
            the old one is not stopped while the port has no other listener; not past
            its death, a SIGTERM, or READY_TIMEOUT_SECONDS. Under unix: every worker
            shares the main process's socket, listening from the start."""
            if replacement is None or self.bind_uds or not os.path.isdir("/proc/self/net"):
                return
            deadline = time.monotonic() + self.READY_TIMEOUT_SECONDS
            while replacement.is_alive() and not self.interrupt_signal:
                if self.bind_port in listening_ports(replacement.inner.pid):
                    return
                if time.monotonic() > deadline:
                    logging.getLogger("_granian").warning(
                        "worker-%d's replacement does not listen after %.0f s: stopping the old one anyway",
                        idx + 1, self.READY_TIMEOUT_SECONDS)
                    return
                time.sleep(0.05)

        def _reload(self, spawn_target, target_loader):
            self.reloading = True
            try:
                return super()._reload(spawn_target, target_loader)
            finally:
                self.reloading = False

        def shutdown(self, exit_code=0):
            if self.interrupt_signal and self.wrks and self.drain is not None and self.drain_seconds:
                logging.getLogger("_granian").info(
                    "Draining: not accepting; every response closes its connection for %.1f s", self.drain_seconds)
                if self.bind_uds:
                    # One socket shared by every worker (not replaced by them): off the
                    # filesystem, new clients are refused; what is queued is still served.
                    Path(self.bind_uds).unlink(missing_ok=True)
                self.drain.raise_()
                time.sleep(self.drain_seconds)
            try:
                super().shutdown(exit_code)
            finally:
                if self.drain is not None:
                    self.drain.remove()

    return DrainingServer


class DrainFlag:
    """Bytes in a file the main process and every worker map (each worker's watch polls
    them without a system call; see WorkerDrain). Byte 0 is 1 once the whole server
    drains; each worker also has a slot of its own, 1 once that worker alone drains (a
    graceful reload). A worker's flag is raised when either is."""

    SIZE = 4096  # slot 0 and 4,095 worker slots

    def __init__(self, path: Path, view: mmap.mmap, slot: int = 0) -> None:
        self.path, self._view, self.slot = path, view, slot

    @classmethod
    def slot_for(cls, serial: int) -> int:
        return 1 + serial % (cls.SIZE - 1)

    @classmethod
    def create(cls, directory: Path) -> DrainFlag:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"granian-{os.getpid()}.drain"
        path.write_bytes(bytes(cls.SIZE))
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path, slot: int = 0) -> DrainFlag:
        if not 0 <= slot < cls.SIZE:
            raise ValueError(f"drain slot {slot} out of range")
        with open(path, "r+b") as file:
            return cls(Path(path), mmap.mmap(file.fileno(), cls.SIZE), slot)

    def __bool__(self) -> bool:
        return self._view[0] == 1 or self._view[self.slot] == 1

    def raise_(self, slot: int = 0) -> None:
        self._view[slot] = 1

    def lower(self, slot: int) -> None:
        self._view[slot] = 0

    def remove(self) -> None:
        Path(self.path).unlink(missing_ok=True)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on, read from /proc (its socket inodes, and
    the kernel's TCP tables for its network namespace); empty when it cannot be read."""
    inodes = set()
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{name}")
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def refuse_a_port_in_use(bind: dict) -> None:
    """Exit when another process listens on the address, as gunicorn does. granian's
    workers bind with SO_REUSEPORT, so a second server started on a port in use would
    otherwise share it with the first, each taking a share of the connections (seen
    here: a forgotten instance with another database's keys answering every other
    request with 503)."""
    if "port" not in bind:
        return  # a Unix socket: granian refuses a path in use itself
    family = socket.AF_INET6 if ":" in bind["address"] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        try:
            probe.bind((bind["address"], bind["port"]))
        except OSError as exc:
            raise SystemExit(f"GUNICORN_BIND: cannot listen on {bind['address']}:{bind['port']}: {exc.strerror} "
                             "(is another instance running?)") from None


def claim_metrics_dir(directory: str):
    """Make ``directory`` this server's: lock it (an flock on its ``.lock`` file, held by
    the main process and the workers it forks, released by the kernel once they have
    all ended, however they end) and empty it of everything else; or exit, when
    another running server holds it: emptied, that server would lose its samples and
    its workers' drain flag, and /metrics would mix the two."""
    import fcntl

    os.makedirs(directory, exist_ok=True)
    lock = open(os.path.join(directory, ".lock"), "a")  # noqa: SIM115 - held while serving
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SystemExit(f"PROMETHEUS_MULTIPROC_DIR={directory}: in use by another running server; give each "
                         "instance its own (or its own AUTHSERVICE_VAR_DIR)") from None
    for entry in os.scandir(directory):
        if entry.name == ".lock":
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    return lock


def serve_granian(app: str) -> None:
    refuse_a_port_in_use(parse_bind(os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")))
    # Relative paths mean what they mean to the workers (and to gunicorn): from ROOT.
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    directory = os.path.realpath(metrics_dir())
    with claim_metrics_dir(directory):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        os.environ[_APP_VARIABLE] = app
        granian_server(app).serve()


def worker_application():
    """granian's factory, called once in each worker process: the WSGI application, with
    the worker's exit hooked and secrets dropped from the environment it copies per request."""
    import importlib
    from multiprocessing import util

    module_name, _, attribute = os.environ.get(_APP_VARIABLE, DEFAULT_APP).partition(":")
    application = getattr(importlib.import_module(module_name), attribute or "application")
    # granian's worker ends through multiprocessing, which runs its finalizers (not atexit).
    util.Finalize(None, worker_exit, exitpriority=10)
    for name in SECRET_VARIABLES:
        os.environ.pop(name, None)
    draining = None
    if drain_file := os.environ.get(_DRAIN_FILE_VARIABLE):
        try:
            draining = WorkerDrain(DrainFlag.open(drain_file, int(os.environ.get(_DRAIN_SLOT_VARIABLE, "0"))))
        except (OSError, ValueError):
            # Serving without the drain beats a crash loop that takes the server down.
            logging.getLogger(__name__).exception(
                "drain flag %s unreadable: this worker will not drain on SIGTERM", drain_file)
        else:
            threading.Thread(target=draining.watch, name="drain-watch", daemon=True).start()
    access_log = logging.getLogger(ACCESS_LOGGER) if os.environ.get("GUNICORN_ACCESS_LOG", "1") == "1" else None
    return _as_gunicorn_gives_it(application, draining, access_log)


class WorkerDrain:
    """A worker's side of the drain: once the main process raises the flag, stop
    accepting connections first, then close each connection with its next response.

    In that order, because closing connections first makes every busy client connect
    anew, and a connection still waiting in the listening socket's queue when the
    socket goes is reset by the kernel (seen here: a ReadError in 3 runs of 15). Kept-
    alive clients open no new connections, so the queue is empty when the socket goes;
    the clients told to close afterwards find the port refusing, which they can retry.

    A worker still starting when the drain begins opens its socket later: the watch
    goes on until it has replaced one, and replaces a socket only once the worker has
    answered a request or the socket has existed for ``SETTLE_SECONDS`` (granian checks
    the socket it has just opened: replaced in that instant, the worker panicked).
    """

    POLL_SECONDS = 0.02
    SETTLE_SECONDS = 0.25

    def __init__(self, flag: DrainFlag) -> None:
        self.flag = flag
        self.closing = False
        self.serving = False  # set by the WSGI wrapper at the first request

    def watch(self) -> None:
        while not self.flag:
            time.sleep(self.POLL_SECONDS)
        try:
            first_seen: dict[int, float] = {}
            while True:  # until a socket is replaced, or the worker exits
                now = time.monotonic()
                listening = listening_descriptors()
                ready = {}
                for fd, identity in listening.items():
                    first_seen.setdefault(fd, now)
                    if self.serving or now - first_seen[fd] >= self.SETTLE_SECONDS:
                        ready[fd] = identity
                stop_accepting(ready)
                if ready or self.serving:
                    self.closing = True
                if ready:
                    return
                time.sleep(self.POLL_SECONDS)
        except Exception:
            logging.getLogger(__name__).exception("the drain could not stop this worker accepting")
        finally:
            self.closing = True  # whatever happened, connections are still told to close

    def __bool__(self) -> bool:
        return self.closing


def listening_descriptors() -> dict[int, tuple[int, int]]:
    """This process's listening TCP sockets: descriptor -> (st_dev, st_ino). None when
    /proc/self/fd is missing (not Linux).

    Nothing is duplicated or closed here: closing any descriptor of a file releases
    every POSIX lock the process holds on it (SQLite's: an earlier version, which
    duplicated each descriptor to look at it, let two workers' writes at exit overlap,
    and one was lost). A socket object is built on the descriptor itself and detached.
    Unix-socket listeners are left alone: under ``unix:`` granian's workers share one
    socket, which the main process takes off the filesystem instead (DrainingServer).
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return {}
    found = {}
    for name in names:
        fd = int(name)
        try:
            info = os.fstat(fd)
        except OSError:
            continue  # gone (the directory listing's own descriptor, for one)
        if not stat.S_ISSOCK(info.st_mode):
            continue
        try:
            candidate = socket.socket(fileno=fd)  # does not own fd when this fails
        except OSError:
            continue
        try:
            if candidate.family in (socket.AF_INET, socket.AF_INET6) \
                    and candidate.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                found[fd] = (info.st_dev, info.st_ino)
        except OSError:
            pass
        finally:
            candidate.detach()
    return found


def stop_accepting(descriptors: dict[int, tuple[int, int]] | None = None) -> int:
    """Stop this process accepting connections on ``descriptors`` (listening_descriptors'
    answer, its default), without disturbing the connections it holds.

    Each descriptor is pointed (dup2) at an idle listening socket of our own: the
    service's socket is closed, so it leaves the port's SO_REUSEPORT group and new
    connections go to the workers still listening (or are refused once none is: a
    clean "connection refused" the client knows was never served); granian's accept
    loop, whose readiness registration went with the old socket, simply waits.
    (Shutting the socket down instead makes every accept fail at once, and the loop
    spin.) A descriptor no longer naming the socket it named when listed is skipped.
    Returns the number of sockets replaced.
    """
    if descriptors is None:
        descriptors = listening_descriptors()
    if not descriptors:
        return 0
    replaced = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.bind("")  # an abstract address of the kernel's choosing: nobody connects to it
        idle.listen(1)
        idle.setblocking(False)
        for fd, identity in descriptors.items():
            try:
                info = os.fstat(fd)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == identity:
                os.dup2(idle.fileno(), fd)  # the copies stay when ``idle`` is closed
                replaced += 1
    return replaced


# gunicorn's limits (limit_request_line, limit_request_field_size), which granian does
# not have: it passes header values of ~100 KB and request lines of 10 KB to Django.
# (More than 100 header fields, gunicorn's third limit, granian refuses itself: 431.)
MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELD = 8190


def _refusal(start_response, status: str, description: str):
    body = ('{"error": "invalid_request", "error_description": "%s"}' % description).encode()  # noqa: UP031
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Connection", "close")])
    return [body]


def _as_gunicorn_gives_it(application, drain: WorkerDrain | None = None, access_log: logging.Logger | None = None):
    """The request as gunicorn would have passed it on, or refused, and its access line:

    - a request line longer than ``MAX_REQUEST_LINE`` bytes is answered 414, a header
      field (name, ": ", value) longer than ``MAX_HEADER_FIELD`` bytes 431, before
      Django sees either;
    - granian sets HTTP_HOST to "" when a request has no Host header (HTTP/1.0: HAProxy's
      plain ``option httpchk``); Django then refuses it (400, DisallowedHost) instead of
      falling back to SERVER_NAME as it does under gunicorn, which leaves HTTP_HOST unset;
    - while the server drains (``drain`` raised), the response closes its connection, as
      gunicorn's answers do once it has been told to stop;
    - a response whose body is in memory (Django's, unless streaming) is handed to
      granian as one list: granian writes a list at once, where it pulls any other
      iterable item by item through Python (about 8% of a token request's time);
    - ``access_log`` (when given) gets gunicorn's access line (authservice.access_line),
      byte count included, instead of granian's own.
    """
    stamp = Stamp()

    def wsgi(environ, start_response):
        started = time.perf_counter()
        answer = {}

        def respond(status, headers, exc_info=None):
            answer["status"] = status
            if drain:
                headers = [(name, value) for name, value in headers if name.lower() != "connection"]
                headers.append(("Connection", "close"))
            return start_response(status, headers, exc_info)

        if drain is not None:
            drain.serving = True
        try:
            body = _checked(environ, respond)
            if body is None:
                body = application(environ, respond)
                if getattr(body, "streaming", True) is False:  # a Django response, its body in memory
                    content = body.content
                    try:
                        body.close()  # request_finished: granian would have called it after sending
                    except Exception:
                        logging.getLogger(__name__).exception("closing the response failed (it is sent)")
                    body = [content]
        except BaseException:
            if access_log is not None:
                _log_access(access_log, environ, stamp(), "500", None, started)
            raise
        if access_log is not None:
            sent = sum(map(len, body)) if isinstance(body, list) else None
            _log_access(access_log, environ, stamp(), answer.get("status", "500").split(" ", 1)[0], sent, started)
        return body

    return wsgi


def _checked(environ, start_response):
    """None, or the refusal of a request gunicorn would have refused (see above)."""
    query = environ.get("QUERY_STRING", "")
    line = (len(environ.get("REQUEST_METHOD", "")) + len(environ.get("PATH_INFO", ""))
            + (len(query) + 1 if query else 0) + len(environ.get("SERVER_PROTOCOL", "")) + 2)
    if line > MAX_REQUEST_LINE:
        return _refusal(start_response, "414 Request-URI Too Long",
                        f"The request line is longer than {MAX_REQUEST_LINE} bytes.")
    for name, value in environ.items():
        if isinstance(value, str) and len(name) + len(value) > MAX_HEADER_FIELD - 2 \
                and (name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")):
            return _refusal(start_response, "431 Request Header Fields Too Large",
                            f"A header field is longer than {MAX_HEADER_FIELD} bytes.")
    if environ.get("HTTP_HOST") == "":
        del environ["HTTP_HOST"]
    return None


def _log_access(logger: logging.Logger, environ, stamp: str, status: str, sent, started: float) -> None:
    logger.info(access_line(environ, stamp, status, sent, f"{time.perf_counter() - started:.6f}"))


def worker_exit() -> None:
    """What gunicorn.conf.py's worker_exit and child_exit hooks do, from inside the worker."""
    from django.apps import apps

    if apps.ready:
        from registry.activity import flush

        flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    app = args[0] if args else DEFAULT_APP
    if ":" not in app:
        app += ":application"
    if chosen_server() == "gunicorn":
        serve_gunicorn(app)
    else:
        serve_granian(app)


if __name__ == "__main__":
    main()
