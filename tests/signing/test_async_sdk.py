"""The SDK from asyncio code, against a live Auth Service: the same flows as the
blocking client (one implementation, ``ocen_sdk._flow``), run on ``httpx.AsyncClient``.

Every test hands the SDK a blocking client whose transport fails, so a blocking
call hidden in an async path (which would stall an event loop) fails the test."""

import asyncio
import json
import uuid

import httpx
import pytest

from examples.participant_provider_asgi import make_app
from ocen_sdk.client import OCENAuth, ResponseSignatureError
from ocen_sdk.http import SIGNATURE_HEADER
from ocen_sdk.key_loading import thumbprint
from ocen_sdk.provider import MemoryReplayStore, ProviderAuthError, ProviderGuard
from ocen_sdk.remote import ProviderUnknown, RegistryClient, ServiceKeys, TokenManager
from registry import services
from tests.keymaterial import ec_key
from tests.signing.conftest import BODY

pytestmark = pytest.mark.django_db(transaction=True)


class _NoBlockingCalls(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a blocking HTTP call from an async path: {request.method} {request.url}")


BLOCKING = httpx.Client(transport=_NoBlockingCalls())


def _sdk(net, http: httpx.AsyncClient, *, provider_id: str | None = None):
    def tokens(resource: str) -> TokenManager:
        return TokenManager(token_url=f"{net.base}/oauth2/token", client_id=net.agent.client_id,
                            client_secret=net.agent.client_secret, resource=resource, http=BLOCKING,
                            async_http=http)

    service = ServiceKeys(net.base, http=BLOCKING, async_http=http)
    registry = RegistryClient(net.base, tokens("urn:ocen:registry"), http=BLOCKING, async_http=http,
                              service_keys=service)
    provider_id = provider_id or str(net.lender.participant.participant_id)
    auth = OCENAuth(tokens=tokens(net.audience), signing_key=net.agent_key, kid=thumbprint(net.agent_key),
                    registry=registry, provider_participant_id=provider_id)
    return auth, registry


def test_async_calls_are_signed_and_verified_with_one_token_fetch(net):
    async def scenario():
        async with httpx.AsyncClient(timeout=10) as http:
            auth, registry = _sdk(net, http)
            # Ten callers at once need a token: one fetch serves them all ...
            tokens = await asyncio.gather(*[auth.tokens.aget() for _ in range(10)])
            assert len(set(tokens)) == 1
            # ... and the calls (one after another: the test server's SQLite takes one writer
            # at a time, and every call uses up its signature's id there) reuse it.
            responses = [await http.post(net.url, content=BODY, auth=auth,
                                         headers={"Content-Type": "application/json"}) for _ in range(3)]
            return responses, auth.tokens.fetches, registry.tokens.fetches

    responses, provider_token_fetches, registry_token_fetches = asyncio.run(scenario())
    assert [response.status_code for response in responses] == [200] * 3
    assert {response.json()["requestedBy"] for response in responses} == {str(net.agent.participant.participant_id)}
    assert provider_token_fetches == 1 and registry_token_fetches == 1  # one refresh however many callers


def test_async_registry_lookups_are_cached_and_revalidated(net):
    lender_id = str(net.lender.participant.participant_id)

    async def scenario():
        async with httpx.AsyncClient(timeout=10) as http:
            _, registry = _sdk(net, http)
            first = await registry.aparticipant(lender_id)
            after_first = registry.requests
            cached = await registry.aparticipant(lender_id)
            after_cached = registry.requests
            revalidated = await registry.aparticipant(lender_id, revalidate=True)
            after_revalidation = registry.requests
            lenders = await registry.aparticipants(role="LENDER")
            unknown = await registry.aparticipant(str(uuid.uuid4()))
            keys = await registry.aparticipant_keys(lender_id)
            return first, after_first, cached, after_cached, revalidated, after_revalidation, lenders, unknown, keys

    first, after_first, cached, after_cached, revalidated, after_revalidation, lenders, unknown, keys = asyncio.run(
        scenario())
    assert (first.role, first.status, first.base_url) == ("LENDER", "APPROVED", "https://l.example")
    assert after_first == 1 and after_cached == 1 and cached is first  # served from memory
    assert revalidated is first and after_revalidation == 2  # a 304: the same record, revalidated
    assert [record.participant_id for record in lenders] == [lender_id]
    assert unknown is None
    assert [key.kid for key in keys] == [thumbprint(net.lender_key)]


def test_async_unknown_provider_fails_before_anything_is_sent(net):
    sent: list[str] = []

    async def scenario():
        async def record(request):
            sent.append(f"{request.method} {request.url.path}")

        async with httpx.AsyncClient(timeout=10, event_hooks={"request": [record]}) as http:
            auth, _ = _sdk(net, http, provider_id=str(uuid.uuid4()))
            await http.post(net.url, content=BODY, auth=auth)

    with pytest.raises(ProviderUnknown, match="not in the registry: nothing was sent"):
        asyncio.run(scenario())
    assert "POST /lender/loan-offers" not in sent


def test_async_refuses_an_unsigned_response(net):
    async def scenario():
        async with httpx.AsyncClient(timeout=10) as http:
            auth, _ = _sdk(net, http)
            await http.get(f"{net.base}/healthz", auth=auth)

    with pytest.raises(ResponseSignatureError, match="not signed"):
        asyncio.run(scenario())


def _guard(net, http: httpx.AsyncClient | None = None) -> ProviderGuard:
    config = {name: value for name, value in net.provider_config.items() if name != "REPLAY_STORE"}
    config["TOKEN_URL"] = f"{net.base}/oauth2/token"  # else discovery at construction (blocking, at start-up)
    return ProviderGuard(config, http=httpx.Client(timeout=10) if http is None else BLOCKING, async_http=http,
                         replay_store=MemoryReplayStore())


CASES = ["good", "replayed", "suspended_caller", "wrong_target", "wrong_key", "unknown_kid", "no_signature",
         "malformed_signature", "bad_token", "no_token"]


@pytest.mark.parametrize("case", CASES)
def test_async_guard_decides_exactly_as_the_blocking_guard(net, case):
    token = net.tokens().get()
    signature, target, authorization = net.sign(BODY), "/lender/loan-offers", f"Bearer {token}"
    if case == "wrong_target":
        target = "/lender/loan-accept"
    elif case == "wrong_key":
        signature = net.sign(BODY, key=ec_key().private_key)
    elif case == "unknown_kid":
        signature = net.sign(BODY, kid="not-a-registered-kid")
    elif case == "no_signature":
        signature = None
    elif case == "malformed_signature":
        signature = "e30..AAAA"
    elif case == "bad_token":
        authorization = authorization[:-4] + "AAAA"
    elif case == "no_token":
        authorization = ""
    elif case == "suspended_caller":
        services.participant_suspend(participant=net.agent.participant, reason="audit", acting_user=None)
    request = {"authorization": authorization, "signature": signature, "body": BODY, "target": target}

    calls = 2 if case == "replayed" else 1

    def blocking_outcome():
        guard = _guard(net)
        try:
            for _ in range(calls):
                caller = guard.verify_request(**request)
            return ("accepted", caller.participant_id)
        except ProviderAuthError as exc:
            return (exc.status, exc.code)

    async def scenario():
        async with httpx.AsyncClient(timeout=10) as http:
            guard = _guard(net, http)
            try:
                for _ in range(calls):
                    caller = await guard.averify_request(**request)
                return ("accepted", caller.participant_id)
            except ProviderAuthError as exc:
                return (exc.status, exc.code)

    blocking = blocking_outcome()
    asynchronous = asyncio.run(scenario())
    assert asynchronous == blocking
    if case == "good":
        assert blocking == ("accepted", str(net.agent.participant.participant_id))
    elif case == "suspended_caller":
        assert blocking == (403, "ERR_CALLER_NOT_APPROVED")
    else:
        assert blocking[0] == 401


def test_the_asgi_provider_example_serves_a_verified_call(net):
    """examples/participant_provider_asgi.py in-process, called by the async client."""

    async def scenario():
        async with httpx.AsyncClient(timeout=10) as service_http:
            guard = _guard(net, service_http)
            transport = httpx.ASGITransport(app=make_app(guard))
            async with httpx.AsyncClient(transport=transport, base_url="http://lender.test") as lender:
                auth, _ = _sdk(net, service_http)
                ok = await lender.post("/loan-offers", content=json.dumps({"amount": 7}).encode(), auth=auth)
                refused = await lender.post("/loan-offers", content=b"{}",
                                             headers={"Authorization": "Bearer nothing"})
                return ok, refused

    ok, refused = asyncio.run(scenario())
    assert ok.status_code == 200 and ok.json()["offers"][0]["amount"] == 7
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    assert refused.headers[SIGNATURE_HEADER]  # refusals are signed too


def _lender_asgi(net, *, bind_refusals: bool):
    """The ASGI example, or a provider that signs refusals over the body alone."""
    async def scenario(signing_key):
        async with httpx.AsyncClient(timeout=10) as service_http:
            guard = _guard(net, service_http)
            app = make_app(guard)
            if not bind_refusals:
                async def app(scope, receive, send):  # a provider that does not bind its refusals
                    answer = json.dumps({"error": "invalid_signature", "code": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
                                         "error_description": "request signature: no match"}).encode()
                    signature = guard.sign_response(answer, status=401, request_id=None)
                    await send({"type": "http.response.start", "status": 401,
                                "headers": [(SIGNATURE_HEADER.encode(), signature.encode())]})
                    await send({"type": "http.response.body", "body": answer})
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://lender.test") as lender:
                auth, _ = _sdk(net, service_http)
                auth.signing_key = signing_key
                return await lender.post("/loan-offers", content=b"{}", auth=auth)

    return scenario


def test_a_bound_refusal_reaches_the_caller_verified(net):
    refused = asyncio.run(_lender_asgi(net, bind_refusals=True)(ec_key().private_key))  # a key never registered
    assert refused.status_code == 401
    assert refused.json()["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"


def test_an_unbound_refusal_is_reported_as_the_refusal_it_claims_to_be(net):
    with pytest.raises(ResponseSignatureError) as refused:
        asyncio.run(_lender_asgi(net, bind_refusals=False)(net.agent_key))
    message = str(refused.value)
    assert "refused the request with HTTP 401 (ERR_JWS_SIGNATURE_VERIFICATION_FAILED: request signature: no match)" \
        in message
    assert "unverified" in message and refused.value.response.status_code == 401
