"""The OCEN sample flow, end to end, from an empty database.

    python -m examples.sample_flow          (or: make demo)

1. The loan agent gets an access token from the token endpoint.
2. The lender validates it with the service's public keys (JWKS).
3. The lender identifies the caller (participantId), fetches its key from the
   registry and verifies the request signature.
4. The lender signs its response; the loan agent verifies it with the lender's key.

Then a tampered body, a wrong key, a replayed request, a request sent to another
path, and a suspended caller are shown being refused.
"""

import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

TMP = tempfile.mkdtemp(prefix="ocen-demo-")
os.environ["DATABASE_URL"] = f"sqlite:///{Path(TMP) / 'demo.sqlite3'}"
os.environ["REDIS_URL"] = ""
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authservice.settings")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from ocen_sdk import OCENAuth, RegistryClient, ResponseSignatureError, TokenManager  # noqa: E402
from ocen_sdk.jws import sign_detached  # noqa: E402
from ocen_sdk.key_loading import public_pem, thumbprint  # noqa: E402
from ocen_sdk.wire import REQUEST_BINDING, SIGNATURE_HEADER, request_binding  # noqa: E402


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def say(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


def decode(token: str) -> dict:
    import base64

    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def main() -> int:
    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=ThreadingServer,
                         handler_class=QuietHandler)
    base = f"http://127.0.0.1:{server.server_port}"
    from django.conf import settings

    with override_settings(ROOT_URLCONF="examples.lender_api", ALLOWED_HOSTS=["127.0.0.1"],
                           AUTHSERVICE={**settings.AUTHSERVICE, "ISSUER": base}):
        call_command("migrate", verbosity=0)
        call_command("bootstrap", "--no-admin", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
        threading.Thread(target=server.serve_forever, daemon=True).start()
        say("setup", f"Auth Service and lender API serving on {base} (empty database in {TMP})")
        return run(base)


def run(base: str) -> int:
    from registry import services

    agent_key = ec.generate_private_key(ec.SECP256R1())
    lender_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    agent = services.participant_onboard(org_name="Demo Loan Agent", role="LOAN_AGENT",
                                         base_url="https://agent.example", public_key=public_pem(agent_key),
                                         acting_user=None)
    lender = services.participant_onboard(org_name="Demo Lender", role="LENDER", base_url="https://lender.example",
                                          public_key=public_pem(lender_key), acting_user=None)
    services.scope_define(name="ocen.loan", description="Loan applications", acting_user=None)
    services.mapping_grant(client=agent.participant, provider=lender.participant, scopes="ocen.loan",
                           acting_user=None)
    lender_audience = lender.participant.audience
    say("setup", f"onboarded loan agent {agent.participant.participant_id} (ES256 key)")
    say("setup", f"onboarded lender     {lender.participant.participant_id} (RS256 key); "
                 f"agent may use ocen.loan at {lender_audience}")

    provider_config = {
        "ISSUER": base, "AUDIENCE": lender_audience, "CLIENT_ID": lender.client_id,
        "CLIENT_SECRET": lender.client_secret, "SIGNING_KEY": _pem(lender_key), "KID": thumbprint(lender_key),
        "PATH_PREFIXES": ["/lender/"], "STATUS_MAX_AGE": 0,
        "REPLAY_STORE": "authservice.replay.provider_replay_store",
    }
    with override_settings(OCEN_PROVIDER=provider_config), httpx.Client(timeout=10) as http:
        token_url = f"{base}/oauth2/token"
        registry_tokens = TokenManager(token_url=token_url, client_id=agent.client_id,
                                       client_secret=agent.client_secret, resource="urn:ocen:registry", http=http)
        lender_tokens = TokenManager(token_url=token_url, client_id=agent.client_id, private_key=agent_key,
                                     kid=thumbprint(agent_key), resource=lender_audience, http=http)
        registry = RegistryClient(base, registry_tokens, http=http)
        auth = OCENAuth(tokens=lender_tokens, signing_key=agent_key, kid=thumbprint(agent_key),
                        registry=registry, provider_participant_id=str(lender.participant.participant_id))

        claims = decode(lender_tokens.get())
        say("1", f"loan agent obtained an access token (private_key_jwt): aud={claims['aud']} "
                 f"scope={claims['scope']!r} participantId={claims['participantId']}")
        body = json.dumps({"loanApplicationId": "APP-42", "amount": 250000}).encode()
        response = http.post(f"{base}/lender/loan-offers", content=body,
                             headers={"Content-Type": "application/json"}, auth=auth)
        answer = response.json()
        say("2", "lender validated the token offline with the service's JWKS "
                 f"(HTTP {response.status_code})")
        say("3", f"lender identified the caller participantId={answer['requestedBy']} and verified its "
                 f"request signature with key {answer['verifiedWithKid']} from the registry")
        say("4", f"lender signed its response; loan agent verified it with the lender's registry key: "
                 f"offer {answer['offers'][0]['offerId']} for {answer['offers'][0]['amount']}")

        tampered = _send(http, base, lender_tokens, agent_key, signed=body, sent=body.replace(b"250000", b"950000"),
                         audience=lender_audience)
        say("reject", f"tampered body refused: HTTP {tampered.status_code} {tampered.json()['error']} "
                      f"({tampered.json()['code']})")
        stranger = ec.generate_private_key(ec.SECP256R1())
        wrong = _send(http, base, lender_tokens, stranger, signed=body, sent=body, kid=thumbprint(agent_key),
                      audience=lender_audience)
        say("reject", f"signature by an unregistered key refused: HTTP {wrong.status_code} {wrong.json()['error']} "
                      f"({wrong.json()['code']})")
        try:
            auth.verify_response(httpx.Response(200, content=b'{"offers": []}', headers={
                SIGNATURE_HEADER: response.headers[SIGNATURE_HEADER]}))
        except ResponseSignatureError as exc:
            say("reject", f"response altered in transit refused by the SDK: {exc.cause.code}")
        fresh_body = json.dumps({"loanApplicationId": "APP-43", "amount": 1000}).encode()
        first = _send(http, base, lender_tokens, agent_key, signed=fresh_body, sent=fresh_body,
                      audience=lender_audience)
        replayed = http.send(first.request)
        say("reject", f"the same signed request sent again refused: HTTP {replayed.status_code} "
                      f"({replayed.json()['code']})")
        redirected = _send(http, base, lender_tokens, agent_key, signed=body, sent=body, audience=lender_audience,
                           path="/lender/loan-accept", signed_path="/lender/loan-offers")
        say("reject", f"a request signed for /lender/loan-offers sent to /lender/loan-accept refused: "
                      f"HTTP {redirected.status_code} ({redirected.json()['code']})")
        services.participant_suspend(participant=agent.participant, reason="demo", acting_user=None)
        suspended = _send(http, base, lender_tokens, agent_key, signed=body, sent=body, audience=lender_audience)
        say("reject", f"after `suspend`, the caller's next request (same token) refused: "
                      f"HTTP {suspended.status_code} ({suspended.json()['code']})")
        ok = (response.status_code == 200 and tampered.status_code == 401 and wrong.status_code == 401
              and first.status_code == 200 and replayed.status_code == 401 and redirected.status_code == 401
              and suspended.status_code == 403)
    say("done", "sample flow complete" if ok else "sample flow FAILED")
    return 0 if ok else 1


def _send(http, base, tokens, key, *, signed: bytes, sent: bytes, audience: str = "", kid: str | None = None,
          path: str = "/lender/loan-offers", signed_path: str | None = None):
    """A hand-made strict-mode request (what the SDK does), so the demo can bend it."""
    binding = request_binding(method="POST", target=signed_path or path, audience=audience)
    signature = sign_detached(signed, key, alg="ES256", kid=kid or thumbprint(key), extra_header=binding,
                              critical=REQUEST_BINDING)
    return http.post(f"{base}{path}", content=sent, headers={
        "Authorization": f"Bearer {tokens.get()}", SIGNATURE_HEADER: signature,
        "Content-Type": "application/json"})


def _pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


if __name__ == "__main__":
    sys.exit(main())
