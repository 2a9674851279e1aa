"""gunicorn.conf.py's access logger writes exactly gunicorn's line for the project's
format, without gunicorn's per-request dict of every header and environ variable."""

import logging
import os
import runpy
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from authservice.gunicorn_worker import ACCESS_LOG_FORMAT, AccessLogger

ROOT = Path(__file__).resolve().parents[2]


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _line(logger_class, access_log_format, resp, environ, request_time) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", access_log_format)
    logger = logger_class(cfg)
    logger.now = lambda: "[29/Nov/2026:16:00:00 +0000]"
    lines = _Lines()
    logger.access_log.handlers = [lines]
    req = SimpleNamespace(headers=[("HOST", "example"), ("AUTHORIZATION", "Basic c2VjcmV0")])
    logger.access(resp, req, environ, request_time)
    return lines.lines[0]


@pytest.mark.parametrize(("status", "sent", "agent", "path"), [
    ("200 OK", 1234, "wrk", "/oauth2/token"),
    ("401 Unauthorized", 0, 'a "quoted" agent', '/path/with"quote'),
    (404, None, None, "/"),
])
def test_the_line_is_gunicorns(status, sent, agent, path):
    resp = SimpleNamespace(status=status, sent=sent, headers=[("Content-Type", "application/json")])
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "POST", "PATH_INFO": path, "RAW_URI": path + "?q=1",
               "QUERY_STRING": "q=1", "SERVER_PROTOCOL": "HTTP/1.1"}
    if agent is not None:
        environ["HTTP_USER_AGENT"] = agent
    took = timedelta(seconds=1, microseconds=4567)
    ours = _line(AccessLogger, ACCESS_LOG_FORMAT, resp, environ, took)
    assert ours == _line(Logger, ACCESS_LOG_FORMAT, resp, environ, took)
    assert "q=1" not in ours and "c2VjcmV0" not in ours  # no query string, no header


def test_another_format_is_left_to_gunicorn():
    resp = SimpleNamespace(status="200 OK", sent=5, headers=[])
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "PATH_INFO": "/", "RAW_URI": "/",
               "SERVER_PROTOCOL": "HTTP/1.1"}
    assert _line(AccessLogger, "%(r)s %(s)s", resp, environ, timedelta()) == "GET / HTTP/1.1 200"


def test_gunicorn_conf_uses_it_with_its_format():
    # gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR in the environment it runs in: kept
    # out of this process's (it once reached the cluster smoke's instances, which then
    # shared one metrics directory and wiped each other's files at start).
    with mock.patch.dict(os.environ):
        conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["logger_class"] == "authservice.gunicorn_worker.AccessLogger"
    assert conf["access_log_format"] == ACCESS_LOG_FORMAT


def test_the_stamp_is_gunicorns_time():
    from authservice.access_line import Stamp

    logger = Logger(Config())
    before, stamp, after = logger.now(), Stamp()(), logger.now()
    assert stamp in (before, after)


def test_a_control_character_cannot_forge_another_line():
    from authservice.access_line import access_line

    line = access_line({"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "PATH_INFO": "/a\n10.0.0.8 - - forged",
                        "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": "agent\r\nx"}, "[t]", 404, 0, "0.000100")
    assert "\n" not in line and "\r" not in line
    assert "/a\\x0a10.0.0.8 - - forged" in line and '"agent\\x0d\\x0ax"' in line
