"""While the database server refuses connections, requests answer 503 at once instead of
each holding a request thread for the pool's whole wait."""

import json
import socket

import pytest
from django.db import OperationalError
from django.http import JsonResponse
from django.test import RequestFactory
from psycopg_pool import PoolTimeout

from authservice.availability import FailFastMiddleware, circuit, unavailable_response


@pytest.fixture
def database_server(monkeypatch):
    """A stand-in for the database server's address: listening, or closed."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    address = listener.getsockname()
    monkeypatch.setattr(type(circuit), "address", staticmethod(lambda: address))
    monkeypatch.setattr(circuit, "_checked_at", float("-inf"))
    circuit.open = False
    yield listener
    listener.close()
    circuit.open = False


def pool_timeout() -> OperationalError:
    """What Django raises when the pool times out: its OperationalError caused by PoolTimeout."""
    try:
        try:
            raise PoolTimeout("couldn't get a connection after 1.00 sec")
        except PoolTimeout as cause:
            raise OperationalError("couldn't get a connection") from cause
    except OperationalError as exc:
        return exc


def test_a_pool_timeout_opens_the_circuit_and_refused_connections_keep_it_open(database_server):
    factory = RequestFactory()
    reached = []
    middleware = FailFastMiddleware(lambda r: reached.append(r.path) or JsonResponse({}))
    assert unavailable_response(factory.post("/oauth2/token"), pool_timeout()).status_code == 503
    assert circuit.open
    database_server.close()  # the server is down: connections refused
    refused = middleware(factory.post("/oauth2/token"))
    assert refused.status_code == 503 and refused["Retry-After"] == "2"
    assert json.loads(refused.content)["error"] == "temporarily_unavailable"
    assert json.loads(middleware(factory.get("/registry/v1/participants")).content)["error"] == "service_unavailable"
    assert reached == []  # never waited on the pool
    for path in ("/healthz", "/readyz", "/oauth2/jwks", "/.well-known/openid-configuration"):
        assert middleware(factory.get(path)).status_code == 200
    assert reached == ["/healthz", "/readyz", "/oauth2/jwks", "/.well-known/openid-configuration"]
    assert circuit.open


def test_the_circuit_closes_when_the_server_accepts_again(database_server):
    circuit.open = True
    reached = []
    response = FailFastMiddleware(lambda r: reached.append(r.path) or JsonResponse({}))(
        RequestFactory().post("/oauth2/token"))
    assert response.status_code == 200 and reached == ["/oauth2/token"] and not circuit.open


def test_other_database_errors_do_not_open_it(database_server):
    unavailable_response(RequestFactory().post("/oauth2/token"),
                         OperationalError("canceling statement due to statement timeout"))
    assert not circuit.open


def test_readyz_says_unreachable_without_waiting_while_the_server_refuses(database_server, client, db):
    circuit.open = True
    database_server.close()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["database"] == "unreachable"
    assert client.get("/healthz").status_code == 200
