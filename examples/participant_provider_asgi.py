"""A participant's API (a lender) on plain ASGI, protected with nothing but the SDK:
``ProviderGuard.averify_request`` awaits the registry and the service's keys, so the
event loop never blocks. Serve it with any ASGI server, for instance

    OCEN_ISSUER=http://127.0.0.1:8000 OCEN_PARTICIPANT_ID=<lender id> \\
    OCEN_CLIENT_ID=... OCEN_CLIENT_SECRET=... OCEN_SIGNING_KEY_FILE=lender.pem OCEN_KID=<kid> \\
    uvicorn examples.participant_provider_asgi:app --port 9000

FastAPI or Starlette: call ``guard.averify_request(...)`` the same way in a
dependency, with ``await request.body()``, and sign the answer with
``guard.sign_response``. One process here, so the in-memory replay store is enough.
"""

import json
import os

import httpx

from ocen_sdk.provider import MemoryReplayStore, ProviderAuthError, ProviderGuard, claimed_request_id
from ocen_sdk.wire import SIGNATURE_HEADER


def build_guard(async_http: httpx.AsyncClient | None = None) -> ProviderGuard:
    return ProviderGuard({
        "ISSUER": os.environ["OCEN_ISSUER"],
        "AUDIENCE": f"urn:ocen:participant:{os.environ['OCEN_PARTICIPANT_ID']}",
        "CLIENT_ID": os.environ["OCEN_CLIENT_ID"],
        "CLIENT_SECRET": os.environ["OCEN_CLIENT_SECRET"],
        "SIGNING_KEY_FILE": os.environ["OCEN_SIGNING_KEY_FILE"],
        "KID": os.environ.get("OCEN_KID"),
    }, async_http=async_http, replay_store=MemoryReplayStore())


async def _body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def make_app(guard: ProviderGuard):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        body = await _body(receive)
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?")[0] + (
            f"?{query}" if query else "")
        # A refusal names the request id the caller claimed, so the caller can match it.
        request_id = claimed_request_id(headers.get(SIGNATURE_HEADER) or headers.get("signature"))
        try:
            caller = await guard.averify_request(
                authorization=headers.get("authorization", ""), signature=headers.get(SIGNATURE_HEADER),
                alternate_signature=headers.get("signature"), body=body, target=target, method=scope["method"])
            request_id = caller.request_id
            status, payload = 200, {"offers": [{"offerId": "OFFER-1", "amount": json.loads(body or b"{}").get(
                "amount", 0)}], "requestedBy": caller.participant_id}
        except ProviderAuthError as exc:
            status, payload = exc.status, exc.as_json()
        except ValueError:
            status, payload = 400, {"error": "invalid_json"}
        answer = json.dumps(payload).encode()
        response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        signature = guard.sign_response(answer, status=status, request_id=request_id)
        if signature:
            response_headers.append((SIGNATURE_HEADER.encode(), signature.encode()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": answer})

    return app


class LazyApp:
    """The ASGI app an ASGI server imports: the guard is built on the first request."""

    def __init__(self) -> None:
        self._app = None

    async def __call__(self, scope, receive, send):
        if self._app is None:
            self._app = make_app(build_guard())
        await self._app(scope, receive, send)


app = LazyApp()
