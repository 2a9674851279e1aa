"""The live network the signing suites run against: a loan agent and a lender
onboarded, the lender's API (examples.lender_api) served by a live server."""

import gc
import json

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from ocen_sdk.client import OCENAuth
from ocen_sdk.http import REQUEST_BINDING, SIGNATURE_HEADER, request_binding, signed_payload
from ocen_sdk.jws import sign_detached
from ocen_sdk.key_loading import default_alg, public_pem, thumbprint
from ocen_sdk.remote import RegistryClient, ServiceKeys, TokenManager
from registry import services
from tests.keymaterial import ec_key, rsa_key

BODY = json.dumps({"loanApplicationId": "APP-1", "amount": 1000}).encode()


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class Network:
    """An onboarded loan agent and lender, the lender's API live, the agent's SDK ready."""

    def __init__(self, base: str, settings):
        from authservice.signing_keys import signing_key_ensure

        signing_key_ensure()
        self.base = base
        self.agent_key, self.lender_key = ec_key().private_key, rsa_key().private_key
        self.agent = services.participant_onboard(org_name="Agent", role="LOAN_AGENT", base_url="https://a.example",
                                                  public_key=public_pem(self.agent_key), acting_user=None)
        self.lender = services.participant_onboard(org_name="Lender", role="LENDER", base_url="https://l.example",
                                                   public_key=public_pem(self.lender_key), acting_user=None)
        services.scope_define(name="ocen.loan", acting_user=None)
        services.mapping_grant(client=self.agent.participant, provider=self.lender.participant, scopes="ocen.loan",
                               acting_user=None)
        self.audience = self.lender.participant.audience
        settings.OCEN_PROVIDER = {
            "ISSUER": base, "AUDIENCE": self.audience, "CLIENT_ID": self.lender.client_id,
            "CLIENT_SECRET": self.lender.client_secret, "SIGNING_KEY": _pem(self.lender_key),
            "KID": thumbprint(self.lender_key), "PATH_PREFIXES": ["/lender/"], "STATUS_MAX_AGE": 0,
            "REPLAY_STORE": "authservice.replay.provider_replay_store",
        }
        self.provider_config = settings.OCEN_PROVIDER
        self.http = httpx.Client(timeout=10)
        self.url = f"{base}/lender/loan-offers"

    def tokens(self, **kwargs) -> TokenManager:
        options = {"client_secret": self.agent.client_secret, **kwargs}
        return TokenManager(token_url=f"{self.base}/oauth2/token", client_id=self.agent.client_id,
                            resource=options.pop("resource", self.audience), http=self.http, **options)

    def auth(self, tokens=None) -> OCENAuth:
        registry = RegistryClient(self.base, self.tokens(resource="urn:ocen:registry"), http=self.http,
                                  service_keys=ServiceKeys(self.base, http=self.http))
        return OCENAuth(tokens=tokens or self.tokens(), signing_key=self.agent_key, kid=thumbprint(self.agent_key),
                        registry=registry, provider_participant_id=str(self.lender.participant.participant_id))

    def sign(self, body: bytes = b"", *, method: str = "POST", target: str = "/lender/loan-offers", key=None,
             kid: str | None = None, **binding) -> str:
        """A strict-mode request signature (``ocen_sdk.http``), with any binding member overridden."""
        key = key or self.agent_key
        header = {**request_binding(method=method, target=target, audience=self.audience), **binding}
        return sign_detached(signed_payload(body, target), key, alg=default_alg(key),
                             kid=kid or thumbprint(self.agent_key), extra_header=header, critical=REQUEST_BINDING)

    def raw_post(self, body: bytes, *, token: str, signature: str | None, header: str = SIGNATURE_HEADER):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if signature is not None:
            headers[header] = signature
        return self.http.post(self.url, content=body, headers=headers)


@pytest.fixture
def net(live_server, settings):
    settings.ROOT_URLCONF = "examples.lender_api"
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ISSUER": live_server.url, "SIGNER_CACHE_SECONDS": 0}
    network = Network(live_server.url, settings)
    yield network
    network.http.close()
    # Clients a test dropped without closing still hold kept-alive connections, each with a
    # live-server thread waiting on it; collected now, they close while the server (and its
    # shared in-memory SQLite connection) is still up, not at the session's end.
    gc.collect()


