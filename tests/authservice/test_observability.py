"""Request ids, JSON logs without secrets, and /metrics."""

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from authservice.observability import JsonFormatter, RequestContextFilter
from tests.conftest import FORM, basic, form


@pytest.fixture
def json_log():
    """The project's JSON log format on the root logger, captured."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_request_id_is_taken_or_made_and_returned(client, db):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    for offered in ("", "bad id with spaces", "x" * 500, "<script>"):
        made = client.get("/healthz", HTTP_X_REQUEST_ID=offered)["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_json_log_lines_carry_the_request_id_and_no_secret(client, make_client, json_log):
    oauth_client, secret = make_client()
    wrong = secret[:-4] + "AAAA"
    response = client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                           HTTP_AUTHORIZATION=basic(oauth_client.client_id, wrong), HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 401
    ok = client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                     HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    token = ok.json()["access_token"]
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "req-42"]
    assert mine, lines  # the refusal was logged, with the request id
    assert all(set(line) >= {"time", "level", "logger", "message", "request_id", "client_id"} for line in lines)
    text = json_log.getvalue()
    for secret_value in (secret, wrong, token, token.split(".")[2]):
        assert secret_value not in text


def _metric(client, name: str) -> float:
    body = client.get("/metrics").content.decode()
    values = [float(line.split()[-1]) for line in body.splitlines() if line.startswith(name + " ")
              or line.startswith(name + "{")]
    return sum(values)


def test_metrics_count_issued_tokens_and_failed_authentications(client, make_client):
    oauth_client, secret = make_client()
    issued, failures = _metric(client, "authservice_tokens_issued_total"), _metric(
        client, "authservice_client_auth_failures_total")
    client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                HTTP_AUTHORIZATION=basic(oauth_client.client_id, "wrong"))
    assert _metric(client, "authservice_tokens_issued_total") == issued + 1
    assert _metric(client, "authservice_client_auth_failures_total") == failures + 1
    assert _metric(client, "authservice_request_duration_seconds_count") > 0


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"])
def test_the_oauth_endpoints_latency_is_labelled_with_their_route(client, make_client, path):
    """The OAuth endpoints skip most middleware (authservice.middleware); their latency is
    still labelled with their own route, not "other"."""
    oauth_client, secret = make_client()
    label = f'authservice_request_duration_seconds_count{{endpoint="{path.lstrip("/")}",method="POST"'
    counted = _labelled(client, label)
    client.post(path, form({"grant_type": "client_credentials", "token": "x"}), content_type=FORM,
                HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))
    assert _labelled(client, label) == counted + 1


def _labelled(client, prefix: str) -> float:
    body = client.get("/metrics").content.decode()
    return sum(float(line.split()[-1]) for line in body.splitlines() if line.startswith(prefix))


def test_metrics_are_refused_to_other_addresses(client, db, settings):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    settings.AUTHSERVICE_METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def _manage_check(tmp_path, metrics_dir: str):
    root = Path(__file__).resolve().parents[2]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTHSERVICE_", "PROMETHEUS_"))},
           "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "DATABASE_URL": f"sqlite:///{tmp_path / 'db'}", "REDIS_URL": ""}
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.ops
def test_a_command_given_a_metrics_directory_that_is_not_there_yet_makes_it(tmp_path):
    """A migration job run with the serving environment: the directory the launcher
    would make at start is not there yet (prometheus_client failed on a file in it)."""
    result = _manage_check(tmp_path, str(tmp_path / "metrics"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "metrics").is_dir()


@pytest.mark.ops
def test_a_metrics_directory_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    result = _manage_check(tmp_path, str(tmp_path / "file" / "metrics"))
    assert result.returncode != 0
    assert f"PROMETHEUS_MULTIPROC_DIR={tmp_path / 'file' / 'metrics'}: cannot create it" in result.stderr


def test_metrics_through_a_trusted_same_host_proxy_judge_the_client_not_the_proxy(client, db, settings):
    """A proxy on the same host relays every client from 127.0.0.1: the allowlist must see
    the client it forwards (as the failed-authentication limits do), not the proxy."""
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "TRUSTED_PROXIES": ["127.0.0.1"]}
    relayed = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.23")
    assert relayed.status_code == 403
    # A client that writes X-Forwarded-For itself is the proxy's last entry, not its first.
    forged = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1, 198.51.100.23")
    assert forged.status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200  # the proxy's own check
    settings.AUTHSERVICE_METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.4.5.6").status_code == 200


def test_metrics_from_an_untrusted_peer_ignore_its_forwarded_for(client, db):
    assert client.get("/metrics", REMOTE_ADDR="198.51.100.23", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
