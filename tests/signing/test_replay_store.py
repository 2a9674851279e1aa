"""Where a provider remembers used requests, for how long, and what a duplicate gets.

Each test is an attack that worked before: a replay accepted by a second worker that
did not share the cache, a replay accepted once the store forgot an id whose iat was
in the future, and, in OCEN reference compatibility, a duplicate request refused
instead of answered, or run again once its signature was re-encoded."""

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.http import HttpResponse

from ocen_sdk.django import OCENProviderMiddleware
from ocen_sdk.http import SIGNATURE_HEADER
from tests.signing.conftest import BODY

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
UNSHARED = {
    "locmem": "django.core.cache.backends.locmem.LocMemCache",
    "dummy": "django.core.cache.backends.dummy.DummyCache",
    "file": "django.core.cache.backends.filebased.FileBasedCache",
}
PROVIDER = {"ISSUER": "https://auth.example", "AUDIENCE": "urn:ocen:participant:p", "CLIENT_ID": "c",
            "CLIENT_SECRET": "s", "REPLAY_CACHE": "replay"}


def _check_errors() -> str:
    try:
        call_command("check", tags=["security"], stdout=None)
    except SystemCheckError as exc:
        return str(exc)
    return ""


def _with_replay_cache(settings, backend: str, tmp_path) -> None:
    settings.CACHES = {**settings.CACHES, "replay": {"BACKEND": backend, "LOCATION": str(tmp_path / "cache")}}


# --- finding 4: the replay store is shared --------------------------------------------------------

@pytest.mark.parametrize("backend", UNSHARED.values(), ids=UNSHARED.keys())
def test_a_replay_cache_other_workers_cannot_see_fails_the_system_check(settings, tmp_path, backend):
    _with_replay_cache(settings, backend, tmp_path)
    settings.OCEN_PROVIDER = PROVIDER
    errors = _check_errors()
    assert "ocen_sdk.E001" in errors and "REPLAY_CACHE_SINGLE_PROCESS_OK" in errors
    with pytest.raises(ImproperlyConfigured, match="not shared by every worker"):
        OCENProviderMiddleware(lambda request: HttpResponse(), dict(PROVIDER))


def test_a_single_process_development_server_may_use_a_local_replay_cache(settings, tmp_path):
    _with_replay_cache(settings, UNSHARED["locmem"], tmp_path)
    settings.OCEN_PROVIDER = {**PROVIDER, "REPLAY_CACHE_SINGLE_PROCESS_OK": True}
    assert "ocen_sdk.E001" not in _check_errors()


def test_a_shared_replay_cache_or_store_passes_the_system_check(settings, tmp_path):
    _with_replay_cache(settings, "django.core.cache.backends.db.DatabaseCache", tmp_path)
    settings.OCEN_PROVIDER = PROVIDER
    assert "ocen_sdk.E001" not in _check_errors()
    _with_replay_cache(settings, UNSHARED["locmem"], tmp_path)
    settings.OCEN_PROVIDER = {**PROVIDER, "REPLAY_STORE": "authservice.replay.provider_replay_store"}
    assert "ocen_sdk.E001" not in _check_errors()


def test_compat_mode_keeps_first_responses_in_a_shared_cache_only(settings, tmp_path):
    _with_replay_cache(settings, UNSHARED["locmem"], tmp_path)
    settings.OCEN_PROVIDER = {**PROVIDER, "REPLAY_STORE": "authservice.replay.provider_replay_store",
                              "ALLOW_B64_WITHOUT_CRIT": True}
    assert "ocen_sdk.E001" in _check_errors()


# --- through the live lender API ---------------------------------------------------------------

pytestmark_live = pytest.mark.django_db(transaction=True)


def _post(net, signature: str, body: bytes = BODY):
    return net.http.post(net.url, content=body, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {net.tokens().get()}",
        SIGNATURE_HEADER: signature})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _reference_signature(net, body: bytes = BODY) -> tuple[str, int, int]:
    """What OCEN's reference participant sends: ES256, b64:false without crit, over the body alone."""
    encoded = _b64(json.dumps({"alg": "ES256", "b64": False, "kid": None}).encode())
    r, s = decode_dss_signature(net.agent_key.sign(encoded.encode() + b"." + body, ec.ECDSA(hashes.SHA256())))
    return encoded, r, s


def _compact(encoded: str, r: int, s: int) -> str:
    return f"{encoded}..{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _compat(settings):
    settings.OCEN_PROVIDER = {**settings.OCEN_PROVIDER, "ALLOW_B64_WITHOUT_CRIT": True,
                              "REPLAY_CACHE_SINGLE_PROCESS_OK": True}  # the live test server is one process


def _same_answer(first, second) -> None:
    assert second.status_code == first.status_code == 200
    assert second.content == first.content  # the same offer id: the view did not run again
    assert second.headers[SIGNATURE_HEADER] == first.headers[SIGNATURE_HEADER]
    assert second.headers["Content-Type"] == first.headers["Content-Type"]


# --- finding 5: kept until the signature's window closes ------------------------------------------

@pytestmark_live
def test_a_request_signed_in_the_future_cannot_be_replayed_once_the_store_forgets_it(net, settings):
    window, leeway = 1, 3
    settings.OCEN_PROVIDER = {**settings.OCEN_PROVIDER, "REPLAY_WINDOW": window, "LEEWAY": leeway}
    # A caller whose clock runs ahead: iat nearly LEEWAY in the future, still accepted.
    signature = net.sign(BODY, iat=time.time() + leeway - 0.2)
    accepted_at = time.monotonic()
    assert _post(net, signature).status_code == 200
    # Past acceptance + window + leeway, but still inside iat + window + leeway.
    time.sleep(max(0.0, window + leeway + 0.5 - (time.monotonic() - accepted_at)))
    replay = _post(net, signature)
    assert replay.status_code == 401 and replay.json()["code"] == "ERR_SIG_REPLAYED", replay.text


# --- finding 9: compat duplicates answered as OCEN says ------------------------------------------------

@pytestmark_live
def test_a_compat_retry_gets_the_first_response_and_the_view_runs_once(net, settings):
    _compat(settings)
    signature = _compact(*_reference_signature(net))
    first = _post(net, signature)
    assert first.status_code == 200, first.text
    _same_answer(first, _post(net, signature))
    _same_answer(first, _post(net, signature))


@pytestmark_live
def test_an_es256_signature_re_encoded_high_s_is_the_same_request(net, settings):
    _compat(settings)
    encoded, r, s = _reference_signature(net)
    first = _post(net, _compact(encoded, r, s))
    assert first.status_code == 200, first.text
    _same_answer(first, _post(net, _compact(encoded, r, P256_ORDER - s)))


@pytestmark_live
@pytest.mark.parametrize("mode", ["compat", "strict"])
def test_a_signature_with_its_unused_base64url_bits_set_is_refused(net, settings, mode):
    if mode == "compat":
        _compat(settings)
        signature = _compact(*_reference_signature(net))
    else:
        signature = net.sign(BODY)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = signature[-1]
    # 64 signature bytes: the last of 86 characters carries 2 bits; its 4 low bits are unused.
    flipped = signature[:-1] + alphabet[alphabet.index(last) ^ 1]
    refused = _post(net, flipped)
    assert refused.status_code == 401 and refused.json()["code"] == "ERR_JWS_MALFORMED", refused.text
    assert _post(net, signature).status_code == 200  # the refusal used nothing up


@pytestmark_live
def test_a_compat_signature_used_once_is_refused_at_another_path_not_answered(net, settings):
    """A body-only signature binds no path: sent to another operation after its first use, it is a
    replay (as before), never a run of that operation nor the first operation's answer."""
    _compat(settings)
    signature = _compact(*_reference_signature(net))
    assert _post(net, signature).status_code == 200
    elsewhere = net.http.post(f"{net.base}/lender/loan-accept", content=BODY, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {net.tokens().get()}",
        SIGNATURE_HEADER: signature})
    assert elsewhere.status_code == 401 and elsewhere.json()["code"] == "ERR_SIG_REPLAYED", elsewhere.text


@pytestmark_live
def test_a_different_compat_request_still_runs_the_view(net, settings):
    _compat(settings)
    first = _post(net, _compact(*_reference_signature(net)))
    other_body = json.dumps({"loanApplicationId": "APP-2", "amount": 1000}).encode()
    second = _post(net, _compact(*_reference_signature(net, other_body)), body=other_body)
    assert first.status_code == second.status_code == 200
    assert first.json()["offers"][0]["offerId"] != second.json()["offers"][0]["offerId"]


@pytestmark_live
def test_strict_mode_still_refuses_a_reused_request_id(net):
    signature = net.sign(BODY)
    assert _post(net, signature).status_code == 200
    replay = _post(net, signature)
    assert replay.status_code == 401 and replay.json()["code"] == "ERR_SIG_REPLAYED"


@pytestmark_live
def test_a_compat_retry_to_a_drf_view_gets_the_first_response(net, settings):
    from django.test import Client

    _compat(settings)
    settings.ROOT_URLCONF = "tests.signing.drf_provider"
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "ocen_sdk.django.ResponseSigningMiddleware"]
    encoded, r, s = _reference_signature(net)
    http = Client()

    def post(signature):
        return http.post("/lender/drf-offers", data=BODY, content_type="application/json",
                         headers={"Authorization": f"Bearer {net.tokens().get()}", SIGNATURE_HEADER: signature})

    first = post(_compact(encoded, r, s))
    assert first.status_code == 200 and first.json()["offerId"].startswith("OFFER-"), first.content
    for again in (post(_compact(encoded, r, s)), post(_compact(encoded, r, P256_ORDER - s))):
        assert again.status_code == 200 and again.content == first.content
        assert again[SIGNATURE_HEADER] == first[SIGNATURE_HEADER]


@pytest.mark.ops
def test_manage_py_check_refuses_a_local_replay_cache_in_a_project_listing_the_sdk_app(tmp_path):
    """In a fresh process, before anything imported ocen_sdk.django: the check runs from INSTALLED_APPS."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "provider_settings.py").write_text(
        "from authservice.settings import *  # noqa: F403\n"
        "INSTALLED_APPS = [*INSTALLED_APPS, 'ocen_sdk.django.OCENProviderConfig']  # noqa: F405\n"
        "CACHES = {'default': {'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}}\n"
        f"OCEN_PROVIDER = {dict(PROVIDER, REPLAY_CACHE='default')!r}\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "provider_settings", "DATABASE_URL": "", "REDIS_URL": "",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    result = subprocess.run([sys.executable, "-m", "django", "check"], env=env, cwd=root, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "ocen_sdk.E001" in result.stderr, result.stderr


@pytestmark_live
def test_the_sdk_signs_its_retry_anew_with_a_fresh_request_id(net):
    """Strict mode keeps refusing a reused jti, so the SDK never resends one: its retry after a
    refused token carries a new signature with a new jti."""
    import httpx

    from registry import services

    sent = []

    def record(request):
        sent.append(request.headers[SIGNATURE_HEADER])

    tokens = net.tokens()
    tokens.get()
    services.participant_revoke_tokens(participant=net.agent.participant, reason="leaked", acting_user=None)
    with httpx.Client(timeout=10, event_hooks={"request": [record]}) as http:
        response = http.post(net.url, content=BODY, headers={"Content-Type": "application/json"},
                             auth=net.auth(tokens))
    assert response.status_code == 200, response.text
    assert len(sent) == 2
    jtis = [json.loads(base64.urlsafe_b64decode(value.split(".")[0] + "=="))["jti"] for value in sent]
    assert jtis[0] != jtis[1]


@pytestmark_live
def test_a_strict_signature_re_encoded_high_s_is_still_a_replay(net):
    signature = net.sign(BODY)
    assert _post(net, signature).status_code == 200
    head, raw = signature.rsplit(".", 1)
    value = base64.urlsafe_b64decode(raw + "==")
    r, s = int.from_bytes(value[:32], "big"), int.from_bytes(value[32:], "big")
    twin = f"{head}.{_b64(r.to_bytes(32, 'big') + (P256_ORDER - s).to_bytes(32, 'big'))}"
    replay = _post(net, twin)
    assert replay.status_code == 401 and replay.json()["code"] == "ERR_SIG_REPLAYED", replay.text


@pytestmark_live
def test_a_compat_duplicate_under_the_alternate_signature_header_gets_the_first_response(net, settings):
    _compat(settings)
    signature = _compact(*_reference_signature(net))
    first = _post(net, signature)
    again = net.http.post(net.url, content=BODY, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {net.tokens().get()}", "Signature": signature})
    _same_answer(first, again)
