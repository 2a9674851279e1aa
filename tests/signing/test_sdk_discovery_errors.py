"""What a participant's engineer sees when the issuer URL they configured is not the
one the service announces (a service started on another port without
AUTHSERVICE_ISSUER, say)."""

import httpx
import pytest

from ocen_sdk.remote import RegistryError, ServiceKeys


def _service_announcing(issuer: str) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/.well-known/openid-configuration"
        return httpx.Response(200, json={"issuer": issuer, "jwks_uri": f"{issuer}/oauth2/jwks"})

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_another_issuer_in_discovery_is_refused_with_what_to_fix():
    keys = ServiceKeys("http://127.0.0.1:18510", http=_service_announcing("http://127.0.0.1:8000"))
    with pytest.raises(RegistryError) as refused:
        _ = keys.metadata
    message = str(refused.value)
    assert "names issuer 'http://127.0.0.1:8000', not 'http://127.0.0.1:18510'" in message
    assert "AUTHSERVICE_ISSUER" in message


def test_the_announced_issuer_is_accepted():
    keys = ServiceKeys("http://127.0.0.1:18510/", http=_service_announcing("http://127.0.0.1:18510"))
    assert keys.metadata["jwks_uri"] == "http://127.0.0.1:18510/oauth2/jwks"
