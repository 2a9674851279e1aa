"""The SDK sends a token request once more when the connection dropped without an answer.

A client_credentials request is idempotent (each answer is just another token), so a
connection the server closed or reset before answering (a rolling restart, a proxy's
idle timeout) is retried once, with a fresh client assertion for private_key_jwt (the
first one's jti may have been used). An answer, whatever its status, is never retried,
nor is a request that timed out. The token endpoint here is a tiny socket server that
does, connection by connection, what each test scripts.
"""

import asyncio
import json
import socket
import struct
import threading
from urllib.parse import parse_qs

import httpx
import pytest

from ocen_sdk.remote import TokenManager, TokenRequestError
from tests.keymaterial import ec_key

TOKEN_ANSWER = json.dumps({"access_token": "the-token", "token_type": "Bearer", "expires_in": 900}).encode()


class ScriptedEndpoint:
    """Accepts connections on 127.0.0.1 and treats the n-th as ``script[n]`` says:

    - ``"drop"``: read the request, close without a byte of answer;
    - ``"reset"``: read the request, reset the connection (RST);
    - ``"hang"``: read the request, answer nothing until the test ends;
    - an int: answer with that status (200 carries a token).
    """

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.requests: list[dict[str, list[str]]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/oauth2/token"
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "ScriptedEndpoint":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for held in self._held:
            held.close()
        self.listener.close()

    @staticmethod
    def _read_request(conn: socket.socket) -> dict[str, list[str]]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return {}
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return parse_qs(body.decode())

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            action = self.script.pop(0) if self.script else 500
            self.requests.append(self._read_request(conn))
            if action == "drop":
                conn.close()
            elif action == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif action == "hang":
                self._held.append(conn)
            else:
                body = TOKEN_ANSWER if action == 200 else json.dumps({"error": "temporarily_unavailable"}).encode()
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (action, len(body), body))
                conn.close()


def secret_tokens(url: str, **kwargs) -> TokenManager:
    return TokenManager(token_url=url, client_id="agent", client_secret="s3cret", **kwargs)


@pytest.mark.parametrize("failure", ["drop", "reset"])
def test_a_dropped_connection_is_retried_once(failure):
    with ScriptedEndpoint([failure, 200]) as endpoint:
        assert secret_tokens(endpoint.url).get() == "the-token"
    assert len(endpoint.requests) == 2
    assert endpoint.requests[0] == endpoint.requests[1]


@pytest.mark.parametrize("failure", ["drop", "reset"])
def test_a_dropped_connection_is_retried_once_from_asyncio(failure):
    async def fetch(url: str) -> str:
        async with httpx.AsyncClient(timeout=5) as http:
            return await secret_tokens(url, async_http=http).aget()

    with ScriptedEndpoint([failure, 200]) as endpoint:
        assert asyncio.run(fetch(endpoint.url)) == "the-token"
    assert len(endpoint.requests) == 2


def test_only_once():
    with ScriptedEndpoint(["drop", "drop", 200]) as endpoint, pytest.raises(TokenRequestError) as failure:
        secret_tokens(endpoint.url).get()
    assert failure.value.error == "unreachable"
    assert len(endpoint.requests) == 2


def test_the_retry_carries_a_fresh_client_assertion():
    key = ec_key().private_key
    with ScriptedEndpoint(["drop", 200]) as endpoint:
        tokens = TokenManager(token_url=endpoint.url, client_id="agent", private_key=key)
        assert tokens.get() == "the-token"
    first, second = (request["client_assertion"][0] for request in endpoint.requests)
    assert first != second  # a new jti: the first may have been used before the connection dropped


@pytest.mark.parametrize("status", [500, 502, 503])
def test_an_answer_is_never_retried(status):
    with ScriptedEndpoint([status, 200]) as endpoint, pytest.raises(TokenRequestError) as failure:
        secret_tokens(endpoint.url).get()
    assert failure.value.status == status
    assert len(endpoint.requests) == 1


def test_a_timeout_after_the_request_was_sent_is_not_retried():
    with ScriptedEndpoint(["hang", 200]) as endpoint, pytest.raises(TokenRequestError):
        secret_tokens(endpoint.url, http=httpx.Client(timeout=0.5)).get()
    assert len(endpoint.requests) == 1


def test_a_timeout_is_not_retried_from_asyncio():
    async def fetch(url: str) -> str:
        async with httpx.AsyncClient(timeout=0.5) as http:
            return await secret_tokens(url, async_http=http).aget()

    with ScriptedEndpoint(["hang", 200]) as endpoint, pytest.raises(TokenRequestError):
        asyncio.run(fetch(endpoint.url))
    assert len(endpoint.requests) == 1
