"""Provider-side verification cost per request, in-process, next to the raw
``cryptography`` verify of the same signatures, so the overhead is visible.

Per request a provider (``ocen_sdk.provider.ProviderGuard.verify_request``, the code
the middleware runs) checks the caller's access token (RS256, the service's key),
the caller's standing in the registry (status, tokens-not-before), the request's
detached signature (the caller's key, any of the four algorithms) and its binding
(method, target, provider, iat) and claims the request id in a replay store. The
service JWKS and the caller's registry record are already cached, as in steady
state; the replay store is an in-process set (a Redis round trip is not measured).
Two figures: a token the provider has verified before (the steady state: a caller
reuses its token until it expires) and a token seen for the first time.
"""

from __future__ import annotations

import json
import time
import timeit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwcrypto import jwk

from ocen_sdk.http import REQUEST_BINDING, request_binding
from ocen_sdk.jws import ALGORITHMS, Signer, b64url_decode, sign_detached, sign_jwt, verify_detached
from ocen_sdk.provider import ProviderGuard
from ocen_sdk.remote import RegistryClient, TokenManager

ISSUER = "http://issuer.bench"
AUDIENCE = "urn:ocen:participant:bench"
BODY = json.dumps({"loanApplicationId": "APP-1", "amount": 250000, "items": list(range(50))}).encode()


def _keys():
    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "PS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }


def _raw_verify(alg, public, signature: bytes, data: bytes) -> None:
    if alg == "RS256":
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        public.verify(signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                      hashes.SHA256())
    elif alg == "ES256":
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        public.verify(der, data, ec.ECDSA(hashes.SHA256()))
    else:
        public.verify(signature, data)


def _per_call_us(function, iterations: int) -> float:
    function()
    return min(timeit.repeat(function, number=iterations, repeat=3)) / iterations * 1e6


def run(iterations: int = 2000) -> list[dict]:
    service_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    service_jwk = {**jwk.JWK.from_pyca(service_key.public_key()).export_public(as_dict=True), "kid": "svc",
                   "alg": "RS256", "use": "sig"}
    now = int(time.time())
    token = sign_jwt({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 900, "iat": now, "nbf": now,
                      "participantId": "caller", "client_id": "c", "scope": "ocen.loan", "jti": "j"},
                     Signer(key=service_key, alg="RS256", kid="svc"), typ="at+jwt")
    return [_measure(alg, key, service_key, service_jwk, token, iterations) for alg, key in _keys().items()]


def _measure(alg, key, service_key, service_jwk, token: str, iterations: int) -> dict:
    header_b64, payload_b64, signature_b64 = token.split(".")
    token_input, token_signature = f"{header_b64}.{payload_b64}".encode(), b64url_decode(signature_b64)
    caller_jwk = {**jwk.JWK.from_pyca(key.public_key()).export_public(as_dict=True), "kid": "caller-key",
                  "alg": alg, "use": "sig"}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks",
                                             "token_endpoint": f"{ISSUER}/token"})
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [service_jwk]}, headers={"cache-control": "max-age=3600"})
        if path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 900})
        return httpx.Response(200, json={"participant_id": "caller", "role": "LOAN_AGENT", "status": "APPROVED",
                                         "tokens_not_before": None, "keys": [caller_jwk], "endpoints": []},
                              headers={"etag": '"1"'})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    tokens = TokenManager(token_url=f"{ISSUER}/token", client_id="p", client_secret="bench", http=http)  # noqa: S106
    registry = RegistryClient(ISSUER, tokens, http=http, revalidate_after=3600)
    resolver = registry.resolver("caller")
    seen: set[str] = set()
    guard = ProviderGuard({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "CLIENT_ID": "p", "CLIENT_SECRET": "bench",
                           "TOKEN_URL": f"{ISSUER}/token", "STATUS_MAX_AGE": 3600, "VERIFY_REGISTRY_SIGNATURES": False},
                          http=http, replay_store=lambda key, ttl: seen.add(key) is None)
    target = "/loan-offers"
    signature = sign_detached(BODY, key, alg=alg, kid="caller-key",
                              extra_header=request_binding(method="POST", target=target, audience=AUDIENCE),
                              critical=REQUEST_BINDING)
    sig_input, sig_raw = signature.split(".")[0].encode() + b"." + BODY, b64url_decode(signature.split(".")[2])
    public = key.public_key()

    def full() -> None:
        guard.verify_request(authorization=f"Bearer {token}", signature=signature, body=BODY, target=target,
                             method="POST")

    def full_first_use() -> None:
        guard.token_verifier._verified.clear()  # a token this provider has not seen before
        full()

    raw_token_us = _per_call_us(
        lambda: _raw_verify("RS256", service_key.public_key(), token_signature, token_input), iterations)
    raw_sig_us = _per_call_us(lambda: _raw_verify(alg, public, sig_raw, sig_input), iterations)
    jws_us = _per_call_us(lambda: verify_detached(signature, BODY, resolver, algorithms=ALGORITHMS,
                                                  understood=REQUEST_BINDING), iterations)
    full_us = _per_call_us(full, iterations)
    first_us = _per_call_us(full_first_use, iterations)
    raw_us = raw_token_us + raw_sig_us
    return {"alg": alg, "raw_us": round(raw_us, 1), "raw_signature_us": round(raw_sig_us, 1),
            "jws_us": round(jws_us, 1), "full_us": round(full_us, 1), "overhead": round(full_us / raw_us, 2),
            "first_use_us": round(first_us, 1), "first_use_overhead": round(first_us / raw_us, 2)}


if __name__ == "__main__":
    for row in run():
        print(row)
