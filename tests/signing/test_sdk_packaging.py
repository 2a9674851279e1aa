"""The participant SDK needs no Django, and the sample flow runs from an empty database."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ops  # each runs Python afresh in another process
ROOT = Path(__file__).resolve().parents[2]


def _python(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})}, check=False)


def test_sdk_imports_without_django():
    code = ("import sys; sys.modules['django'] = None; sys.modules['rest_framework'] = None\n"
            "import ocen_sdk.jws, ocen_sdk.key_loading, ocen_sdk.remote, ocen_sdk.client, ocen_sdk.http\n"
            "import ocen_sdk.provider\n"
            "print('ok')")
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_sample_flow_runs_end_to_end():
    result = _python("-W", "ignore", "-m", "examples.sample_flow", env={"DJANGO_SECRET_KEY": "demo-" + "x" * 40})
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for step in ("[1] loan agent obtained an access token", "[2] lender validated the token",
                 "[3] lender identified the caller", "[4] lender signed its response",
                 "tampered body refused: HTTP 401 invalid_signature",
                 "signature by an unregistered key refused: HTTP 401 invalid_signature",
                 "response altered in transit refused by the SDK", "[done] sample flow complete"):
        assert step in out, out


def test_the_top_level_exports_import_without_django():
    code = ("import sys\n"
            "from ocen_sdk import OCENAuth, TokenManager, RegistryClient, ServiceKeys, ProviderGuard\n"
            "import ocen_sdk\n"
            "assert all(hasattr(ocen_sdk, name) for name in ocen_sdk.__all__), ocen_sdk.__all__\n"
            "print('django' in sys.modules, 'ocen_sdk.django' in sys.modules)")
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_the_former_module_paths_name_the_same_objects():
    import ocen_sdk
    from ocen_sdk import client, errors, http, provider, registry, remote, service_keys, tokens, wire

    assert (ocen_sdk.OCENAuth, ocen_sdk.ProviderGuard) == (client.OCENAuth, provider.ProviderGuard)
    assert remote.TokenManager is tokens.TokenManager is ocen_sdk.TokenManager
    assert remote.ServiceKeys is service_keys.ServiceKeys is ocen_sdk.ServiceKeys
    assert remote.RegistryClient is registry.RegistryClient is ocen_sdk.RegistryClient
    assert remote.AccessTokenVerifier is service_keys.AccessTokenVerifier
    assert remote.ASSERTION_TYPE == tokens.ASSERTION_TYPE
    assert remote.TokenRequestError is errors.TokenRequestError
    assert remote.RegistryError is registry.RegistryError is errors.RegistryError
    assert remote._header_or_empty is service_keys._header_or_empty
    assert remote._participant_record is registry._participant_record
    assert http.SIGNATURE_HEADER == wire.SIGNATURE_HEADER and http.request_binding is wire.request_binding
    assert set(wire.__all__) <= set(vars(http))
