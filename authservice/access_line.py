"""The access line, the same under gunicorn and granian (imported by neither Django nor
gunicorn's config: by the servers' glue, authservice.gunicorn_worker and authservice.serve).

gunicorn's ``access_log_format`` atoms: ``%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s
%(L)ss "%(a)s"``: the path without its query string (a client that puts a secret in the
URL does not get it logged), no remote user, no referrer, never bodies or headers.
"""

import time

ACCESS_LOG_FORMAT = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss "%(a)s"'


class Stamp:
    """gunicorn's access-line time (``[29/Nov/2026:18:34:11 +0000]``, local time, whole
    seconds), formatted once a second."""

    def __init__(self) -> None:
        self._second, self._text = -1, ""

    def __call__(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._text, self._second = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second)), second
        return self._text


def access_line(environ: dict, stamp: str, status, sent, seconds: str) -> str:
    """The line for one request: ``status`` as the code, ``sent`` the body bytes (or None)
    and ``seconds`` the request time, as gunicorn writes them."""
    return (f'{_quoted(environ.get("REMOTE_ADDR", "-"))} - - {stamp} '
            f'"{_quoted(environ.get("REQUEST_METHOD"))} {_quoted(environ.get("PATH_INFO"))} '
            f'{_quoted(environ.get("SERVER_PROTOCOL"))}" {_quoted(status)} {sent} {seconds}s '
            f'"{_quoted(environ.get("HTTP_USER_AGENT", "-"))}"')


# Control characters (a percent-decoded %0A in a path) written as \xNN: one request, one line.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


def _quoted(value):
    return value.replace('"', '\\"').translate(_CONTROL) if isinstance(value, str) else value
