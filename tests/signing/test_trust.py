"""A signature proves one message, once, at one place; status and key changes reach the
provider within STATUS_MAX_AGE. Each test is an attack that succeeded before."""

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from django.db import connection

from ocen_sdk.client import ResponseSignatureError
from ocen_sdk.http import SIGNATURE_HEADER, signed_payload
from ocen_sdk.jws import sign_detached
from ocen_sdk.key_loading import public_pem, thumbprint
from ocen_sdk.remote import RegistryClient, RegistryError, ServiceKeys
from registry import services
from registry.models import participant_audience
from tests.keymaterial import ec_key
from tests.signing.conftest import BODY

pytestmark = pytest.mark.django_db(transaction=True)
ACCEPT = "/lender/loan-accept"


def _post(net, body=BODY, *, signature, token=None, path="/lender/loan-offers"):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token or net.tokens().get()}",
               SIGNATURE_HEADER: signature}
    return net.http.post(f"{net.base}{path}", content=body, headers=headers)


def _refused(response, code, status=401):
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.json()


def test_the_same_signed_request_is_accepted_once(net):
    signature, token = net.sign(BODY), net.tokens().get()
    assert _post(net, signature=signature, token=token).status_code == 200
    _refused(_post(net, signature=signature, token=token), "ERR_SIG_REPLAYED")
    _refused(_post(net, signature=signature, token=token), "ERR_SIG_REPLAYED")


def test_a_refused_request_does_not_use_up_its_id(net):
    signature = net.sign(BODY)
    _refused(_post(net, signature=signature, token="not-a-token"), "ERR_JWS_MALFORMED")
    assert _post(net, signature=signature).status_code == 200


def test_a_signature_for_one_path_is_refused_at_another(net):
    _refused(_post(net, signature=net.sign(BODY), path=ACCEPT), "ERR_SIG_WRONG_TARGET")
    assert _post(net, signature=net.sign(BODY, target=ACCEPT), path=ACCEPT).status_code == 200


def test_a_get_signature_is_refused_on_a_post(net):
    target = "/lender/loan-offers"
    signature = net.sign(method="GET", target=target)
    headers = {"Authorization": f"Bearer {net.tokens().get()}", SIGNATURE_HEADER: signature}
    _refused(net.http.post(f"{net.base}{target}", content=target.encode(), headers=headers),
             "ERR_SIG_WRONG_METHOD")


def test_a_request_forwarded_to_another_provider_is_refused(net):
    """B received A's request and replays it to C: C refuses. A token for both B and C is
    no longer issued (one provider per token), so C sees A's token for C beside a
    signature addressed to B, and the signature alone is refused."""
    other_key = ec_key()
    other = services.participant_onboard(org_name="Provider C", role="LENDER", base_url="https://c.example",
                                         public_key=other_key.public_pem(), acting_user=None)
    services.mapping_grant(client=net.agent.participant, provider=other.participant, scopes="ocen.loan",
                           acting_user=None)
    token = net.tokens().get()
    signed_for_other = net.sign(BODY, aud=participant_audience(other.participant.participant_id))
    _refused(_post(net, signature=signed_for_other, token=token), "ERR_SIG_WRONG_AUDIENCE")


@pytest.mark.parametrize("age", [400, -120])
def test_a_stale_or_future_signature_is_refused(net, age):
    _refused(_post(net, signature=net.sign(BODY, iat=int(time.time()) - age)), "ERR_SIG_STALE")


def test_a_signature_binding_only_the_body_is_refused_in_strict_mode(net):
    body_only = sign_detached(BODY, net.agent_key, alg="ES256", kid=thumbprint(net.agent_key))
    _refused(_post(net, signature=body_only), "ERR_SIG_NOT_BOUND")


def test_different_signature_headers_are_refused_as_ambiguous(net):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {net.tokens().get()}",
               SIGNATURE_HEADER: net.sign(BODY), "Signature": "eyJhbGciOiJFUzI1NiJ9..AAAA"}
    _refused(net.http.post(net.url, content=BODY, headers=headers), "ERR_SIG_AMBIGUOUS")


class Replaying(httpx.BaseTransport):
    """A man in the middle: answers every later request with the first response it saw,
    or changes the status of a response."""

    def __init__(self, *, change_status: int | None = None) -> None:
        self.first: httpx.Response | None = None
        self.change_status = change_status

    def handle_request(self, request):
        response = httpx.HTTPTransport().handle_request(request)
        response.read()
        if not request.url.path.startswith("/lender/"):
            return response
        if self.change_status is not None:
            return httpx.Response(self.change_status, headers=response.headers, content=response.content)
        self.first = self.first or response
        return httpx.Response(self.first.status_code, headers=self.first.headers, content=self.first.content)


def test_sdk_refuses_an_earlier_response_replayed_for_a_later_request(net):
    auth = net.auth()
    http = httpx.Client(transport=Replaying())
    assert http.post(net.url, content=BODY, auth=auth).status_code == 200
    with pytest.raises(ResponseSignatureError, match="another request"):
        http.post(net.url, content=BODY.replace(b"1000", b"2000"), auth=auth)


def test_sdk_refuses_a_response_whose_status_was_changed(net):
    http = httpx.Client(transport=Replaying(change_status=500))
    with pytest.raises(ResponseSignatureError, match="status 200"):
        http.post(net.url, content=BODY, auth=net.auth())


def test_a_suspended_callers_signed_requests_are_refused(net):
    token = net.tokens().get()
    assert _post(net, signature=net.sign(BODY), token=token).status_code == 200
    services.participant_suspend(participant=net.agent.participant, reason="investigation", acting_user=None)
    _refused(_post(net, signature=net.sign(BODY), token=token), "ERR_CALLER_NOT_APPROVED", status=403)


def test_tokens_from_before_a_suspension_stay_dead_after_reinstatement(net):
    token = net.tokens().get()
    services.participant_suspend(participant=net.agent.participant, reason="investigation", acting_user=None)
    services.participant_reinstate(participant=net.agent.participant, acting_user=None)
    _refused(_post(net, signature=net.sign(BODY), token=token), "ERR_TOKEN_REVOKED")
    assert _post(net, signature=net.sign(BODY)).status_code == 200  # a fresh token works


def test_revoke_tokens_command_ends_existing_tokens_at_the_provider(net):
    from django.core.management import call_command

    token = net.tokens().get()
    assert _post(net, signature=net.sign(BODY), token=token).status_code == 200
    call_command("revoke_tokens", str(net.agent.participant.participant_id), "--reason", "leaked", verbosity=0)
    _refused(_post(net, signature=net.sign(BODY), token=token), "ERR_TOKEN_REVOKED")
    assert _post(net, signature=net.sign(BODY)).status_code == 200


def test_a_revoked_key_is_refused(net):
    old_kid = thumbprint(net.agent_key)
    new_key = ec_key().private_key
    services.public_key_add(participant=net.agent.participant, key_material=public_pem(new_key), acting_user=None)
    assert _post(net, signature=net.sign(BODY)).status_code == 200
    services.public_key_revoke(key=net.agent.participant.keys.get(kid=old_kid), acting_user=None)
    _refused(_post(net, signature=net.sign(BODY)), "ERR_JWKS_NO_MATCHING_KEY")
    assert _post(net, signature=net.sign(BODY, key=new_key, kid=thumbprint(new_key))).status_code == 200


def test_an_expired_certificate_is_refused_locally(net, settings):
    """Even with the caller's record cached for an hour, notAfter is checked at every verification."""
    from datetime import UTC, datetime, timedelta

    settings.OCEN_PROVIDER = {**settings.OCEN_PROVIDER, "STATUS_MAX_AGE": 3600}
    pair = ec_key()
    certificate = pair.certificate(not_after=datetime.now(UTC) + timedelta(seconds=3))
    services.public_key_add(participant=net.agent.participant, key_material=certificate, kid="short-lived",
                            acting_user=None)
    assert _post(net, signature=net.sign(BODY, key=pair.private_key, kid="short-lived")).status_code == 200
    time.sleep(3.5)
    _refused(_post(net, signature=net.sign(BODY, key=pair.private_key, kid="short-lived")),
             "ERR_JWKS_KEY_EXPIRED")


class ReplayingRegistry(httpx.BaseTransport):
    """Serves the first registry answer it saw again, whatever is asked."""

    def __init__(self) -> None:
        self.saved: httpx.Response | None = None

    def handle_request(self, request):
        response = httpx.HTTPTransport().handle_request(request)
        response.read()
        if "/registry/" not in request.url.path:
            return response
        self.saved = self.saved or response
        headers = {k: v for k, v in self.saved.headers.items() if k.lower() != "content-encoding"}
        return httpx.Response(self.saved.status_code, headers=headers, content=self.saved.content)


def _registry(net, transport, **options) -> RegistryClient:
    return RegistryClient(net.base, net.tokens(resource="urn:ocen:registry"), http=httpx.Client(transport=transport),
                          service_keys=ServiceKeys(net.base, http=net.http), **options)


def test_sdk_refuses_an_old_registry_answer_replayed(net):
    registry = _registry(net, ReplayingRegistry(), revalidate_after=0, max_response_age=2, clock_skew=0)
    lender_id = str(net.lender.participant.participant_id)
    assert registry.participant_keys(lender_id)
    registry._cache.clear()  # a fresh process, fed the recorded answer
    time.sleep(3.5)
    with pytest.raises(RegistryError, match="replay"):
        registry.participant_keys(lender_id)


def test_sdk_refuses_another_participants_registry_answer(net):
    registry = _registry(net, ReplayingRegistry())
    registry.participant_keys(str(net.lender.participant.participant_id))
    with pytest.raises(RegistryError, match="another request"):
        registry.participant_keys(str(net.agent.participant.participant_id))


def _compat(net, settings):
    # Compat mode keeps first responses in the Django cache; the live test server is one process.
    settings.OCEN_PROVIDER = {**settings.OCEN_PROVIDER, "ALLOW_B64_WITHOUT_CRIT": True,
                              "REPLAY_CACHE_SINGLE_PROCESS_OK": True}


def _reference_signature(net, **header) -> str:
    """What OCEN's reference participant (jose4j) sends: b64:false without crit, body only."""
    import base64
    import json

    protected = {"alg": "ES256", "b64": False, **header}
    encoded = base64.urlsafe_b64encode(json.dumps(protected).encode()).rstrip(b"=").decode()
    from ocen_sdk.jws import _raw_sign

    raw = _raw_sign("ES256", net.agent_key, encoded.encode() + b"." + BODY)
    return f"{encoded}..{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}"


@pytest.mark.parametrize("header", [{"kid": None}, {"kid": "the-reference-clients-own-kid"}, {}])
def test_compat_mode_accepts_reference_signatures(net, settings, header):
    signature = _reference_signature(net, **header)
    _refused(_post(net, signature=signature), "ERR_JWS_B64_NOT_CRITICAL")  # strict: refused
    _compat(net, settings)
    assert _post(net, signature=signature).status_code == 200


def test_compat_mode_still_checks_bound_signatures(net, settings):
    _compat(net, settings)
    _refused(_post(net, signature=net.sign(BODY), path=ACCEPT), "ERR_SIG_WRONG_TARGET")


def test_jwt_typed_tokens_are_accepted_by_the_middleware_and_sdk(net, settings):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ACCESS_TOKEN_TYP": "JWT"}
    tokens = net.tokens()
    import base64
    import json

    header = json.loads(base64.urlsafe_b64decode(tokens.get().split(".")[0] + "=="))
    assert header["typ"] == "JWT"
    assert net.http.post(net.url, content=BODY, auth=net.auth(tokens)).status_code == 200


@pytest.mark.ops
@pytest.mark.parametrize("store", ["database", "redis"])
def test_the_replay_store_is_shared_between_processes(net, settings, store):
    if connection.vendor != "postgresql":
        # Used ids are rows in the database with or without Redis (a flushed Redis must not re-admit them).
        pytest.skip("the SQLite test database is in memory: another process cannot reach it")
    if store == "redis" and not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set")
    from authservice.replay import provider_replay_store

    env = dict(os.environ)
    if store == "database":
        settings.REDIS_URL = env["REDIS_URL"] = ""
    key = f"jti:{uuid.uuid4()}"
    assert provider_replay_store(key, 60)
    if connection.vendor == "postgresql":
        settings_dict = connection.settings_dict
        env["DATABASE_URL"] = (f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}"
                               f"/{settings_dict['NAME']}")
    code = ("import django, sys; django.setup(); from authservice.replay import provider_replay_store as s; "
            "print(s(sys.argv[1], 60), s(sys.argv[2], 60))")
    other_key = f"jti:{uuid.uuid4()}"
    result = subprocess.run([sys.executable, "-c", code, key, other_key], env={**env, "DJANGO_SETTINGS_MODULE":
                            "authservice.settings"}, cwd=Path(__file__).resolve().parents[2], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["False", "True"], result.stderr
    assert not provider_replay_store(other_key, 60)


def test_signed_payload_of_a_bodyless_request_is_its_target():
    assert signed_payload(b"", "/a?b=1") == b"/a?b=1"


NESTED = base64.urlsafe_b64encode(b"[" * 1500).rstrip(b"=").decode()  # 1,500 levels of nesting


@pytest.mark.parametrize("where", ["token", "signature"])
def test_deeply_nested_headers_at_the_provider_are_a_401(net, where):
    token = f"{NESTED}.{NESTED}.AAAA" if where == "token" else net.tokens().get()
    signature = f"{NESTED}..AAAA" if where == "signature" else net.sign(BODY)
    response = _post(net, signature=signature, token=token)
    assert response.status_code == 401
    assert response.json()["code"] == "ERR_JWS_MALFORMED"


def test_a_client_assertion_inside_the_leeway_after_exp_is_accepted_once(net):
    """Accepted until exp + leeway, so remembered at least that long (both stores)."""
    from ocen_sdk.jws import sign_compact
    from ocen_sdk.remote import ASSERTION_TYPE

    now = int(time.time())
    claims = {"iss": net.agent.client_id, "sub": net.agent.client_id, "aud": f"{net.base}/oauth2/token",
              "iat": now - 60, "exp": now - 5, "jti": uuid.uuid4().hex}
    assertion = sign_compact(json.dumps(claims).encode(), net.agent_key, alg="ES256", kid=thumbprint(net.agent_key))
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    assert net.http.post(f"{net.base}/oauth2/token", data=data).status_code == 200
    for _ in range(3):
        assert net.http.post(f"{net.base}/oauth2/token", data=data).status_code == 401


def test_unknown_kids_refetch_the_callers_record_at_most_once_per_interval(net):
    calls = []

    class Counting(httpx.BaseTransport):
        def handle_request(self, request):
            if "/registry/" in request.url.path:
                calls.append(request.url.path)
            response = httpx.HTTPTransport().handle_request(request)
            response.read()
            return response

    registry = RegistryClient(net.base, net.tokens(resource="urn:ocen:registry"), http=httpx.Client(
        transport=Counting()), service_keys=ServiceKeys(net.base, http=net.http), revalidate_after=3600)
    resolve = registry.resolver(str(net.agent.participant.participant_id))
    for _ in range(20):
        assert resolve({"kid": "nobody-registered-this"}) == []
    assert len(calls) <= 2  # the first fetch, then at most one refetch in the interval (20 of 20 before)
