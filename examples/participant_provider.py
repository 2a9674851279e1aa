"""A participant's API (a lender) protected with nothing but the SDK, on plain WSGI.

    OCEN_ISSUER=http://127.0.0.1:8000 OCEN_PARTICIPANT_ID=<lender id> \\
    OCEN_CLIENT_ID=... OCEN_CLIENT_SECRET=... OCEN_SIGNING_KEY_FILE=lender.pem OCEN_KID=<kid> \\
    PORT=9000 python examples/participant_provider.py

Every request to /loan-offers is checked by ``ProviderGuard`` (token, the caller's
standing in the registry, the signature and what it binds, replay) and every answer
is signed, bound to the request. One process here, so the in-memory replay store is
enough; several workers or instances need a shared one (Redis, a database).
"""

import json
import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from ocen_sdk.provider import MemoryReplayStore, ProviderAuthError, ProviderGuard, claimed_request_id
from ocen_sdk.wire import SIGNATURE_HEADER


def build_guard() -> ProviderGuard:
    return ProviderGuard({
        "ISSUER": os.environ["OCEN_ISSUER"],
        "AUDIENCE": f"urn:ocen:participant:{os.environ['OCEN_PARTICIPANT_ID']}",
        "CLIENT_ID": os.environ["OCEN_CLIENT_ID"],
        "CLIENT_SECRET": os.environ["OCEN_CLIENT_SECRET"],
        "SIGNING_KEY_FILE": os.environ["OCEN_SIGNING_KEY_FILE"],
        "KID": os.environ.get("OCEN_KID"),
    }, replay_store=MemoryReplayStore())


def make_app(guard: ProviderGuard):
    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        target = environ.get("PATH_INFO", "/") + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        # A refusal names the request id the caller claimed, so the caller can match it.
        request_id = claimed_request_id(environ.get("HTTP_X_JWS_SIGNATURE") or environ.get("HTTP_SIGNATURE"))
        try:
            caller = guard.verify_request(
                authorization=environ.get("HTTP_AUTHORIZATION", ""), signature=environ.get("HTTP_X_JWS_SIGNATURE"),
                alternate_signature=environ.get("HTTP_SIGNATURE"), body=body, target=target,
                method=environ["REQUEST_METHOD"])
            request_id = caller.request_id
            status, payload = 200, {"offers": [{"offerId": "OFFER-1", "amount": json.loads(body or b"{}").get(
                "amount", 0)}], "requestedBy": caller.participant_id}
        except ProviderAuthError as exc:
            status, payload = exc.status, exc.as_json()
        except ValueError:
            status, payload = 400, {"error": "invalid_json"}
        answer = json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
        signature = guard.sign_response(answer, status=status, request_id=request_id)
        if signature:
            headers.append((SIGNATURE_HEADER, signature))
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}.get(status, "Error")
        start_response(f"{status} {reason}", headers)
        return [answer]

    return app


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


def main() -> int:
    server = make_server("127.0.0.1", int(os.environ.get("PORT", "9000")), make_app(build_guard()),
                         handler_class=QuietHandler)
    print(f"provider listening on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
