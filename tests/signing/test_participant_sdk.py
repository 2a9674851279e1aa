"""The participant SDK as its users get it: the two examples, which use nothing but
ocen_sdk, run against a live Auth Service, from this checkout and from a fresh venv
that has only the ocen-sdk wheel and its dependencies (no Django)."""

import ast
import os
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path

import httpx
import pytest

from ocen_sdk.key_loading import public_pem, thumbprint
from registry import services
from tests.keymaterial import ec_key, rsa_key
from tests.signing.conftest import _pem
from tests.test_support import free_port

pytestmark = [pytest.mark.ops, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def sdk_version() -> str:
    """The version sdk/pyproject.toml declares: its own, or the attribute it names (read, not imported)."""
    pyproject = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())
    if "version" in pyproject["project"]:
        return pyproject["project"]["version"]
    module, name = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"].rsplit(".", 1)
    package = ROOT / "sdk" / "src" / module.replace(".", "/")
    source = package / "__init__.py" if package.is_dir() else package.with_suffix(".py")
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == name for target in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"sdk/pyproject.toml names {module}.{name}, which {source} does not assign")


@pytest.fixture
def network(live_server, settings, tmp_path):
    """An agent and a lender onboarded; the lender's base URL is where its example API will listen."""
    from authservice.signing_keys import signing_key_ensure

    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ISSUER": live_server.url, "REGISTRY_ALLOW_HTTP_ENDPOINTS": True}
    signing_key_ensure()
    port = free_port()
    agent_key, lender_key = ec_key().private_key, rsa_key().private_key
    agent = services.participant_onboard(org_name="SDK Agent", role="LOAN_AGENT", base_url="https://agent.example",
                                         public_key=public_pem(agent_key), acting_user=None)
    lender = services.participant_onboard(org_name="SDK Lender", role="LENDER", base_url=f"http://127.0.0.1:{port}",
                                          public_key=public_pem(lender_key), acting_user=None)
    services.scope_define(name="ocen.loan", acting_user=None)
    services.mapping_grant(client=agent.participant, provider=lender.participant, scopes="ocen.loan",
                           acting_user=None)
    (tmp_path / "agent.pem").write_text(_pem(agent_key))
    (tmp_path / "lender.pem").write_text(_pem(lender_key))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PYTHON"))}
    return {
        "port": port,
        "provider": {**base_env, "OCEN_ISSUER": live_server.url, "PORT": str(port),
                     "OCEN_PARTICIPANT_ID": str(lender.participant.participant_id), "OCEN_CLIENT_ID": lender.client_id,
                     "OCEN_CLIENT_SECRET": lender.client_secret, "OCEN_SIGNING_KEY_FILE": str(tmp_path / "lender.pem"),
                     "OCEN_KID": thumbprint(lender_key)},
        "client": {**base_env, "OCEN_ISSUER": live_server.url, "OCEN_CLIENT_ID": agent.client_id,
                   "OCEN_CLIENT_SECRET": agent.client_secret, "OCEN_SIGNING_KEY_FILE": str(tmp_path / "agent.pem"),
                   "OCEN_KID": thumbprint(agent_key), "OCEN_PROVIDER_ID": str(lender.participant.participant_id)},
    }


def _run_examples(python: str, network) -> subprocess.CompletedProcess:
    provider = subprocess.Popen([python, str(ROOT / "examples" / "participant_provider.py")], env=network["provider"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{network['port']}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        secret = subprocess.run([python, str(ROOT / "examples" / "participant_client.py")], env=network["client"],
                                capture_output=True, text=True, timeout=120)
        assertion_env = {k: v for k, v in network["client"].items() if k != "OCEN_CLIENT_SECRET"}
        assertion = subprocess.run([python, str(ROOT / "examples" / "participant_client.py")], env=assertion_env,
                                   capture_output=True, text=True, timeout=120)
        asynchronous = subprocess.run([python, str(ROOT / "examples" / "participant_client_async.py")],
                                      env=assertion_env, capture_output=True, text=True, timeout=120)
    finally:
        provider.terminate()
        provider.wait(timeout=20)
    assert assertion.returncode == 0, assertion.stdout + assertion.stderr  # private_key_jwt
    # asyncio, private_key_jwt: two concurrent calls, both answers verified
    assert asynchronous.returncode == 0, asynchronous.stdout + asynchronous.stderr
    assert asynchronous.stdout.count("HTTP 200, response signature verified") == 2, asynchronous.stdout
    return secret


def test_the_examples_make_a_verified_signed_call(network):
    result = _run_examples(sys.executable, network)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LENDER, APPROVED" in result.stdout
    assert "HTTP 200, response signature verified" in result.stdout


def test_the_sdk_wheel_works_alone_in_a_fresh_venv(network, tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w",
                            str(wheels), str(ROOT / "sdk")], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("ocen_sdk-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    # Alone: nothing of this checkout on the path (a PYTHONPATH with sdk/src would make pip
    # take the source tree, and its build's metadata, for an installed ocen-sdk).
    alone = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PYTHON"))}
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], capture_output=True, text=True,
                             timeout=600, env=alone)
    assert install.returncode == 0, install.stderr
    check = subprocess.run([python, "-c", "import importlib.util, ocen_sdk; print(ocen_sdk.__version__, "
                            "importlib.util.find_spec('django') is None)"], capture_output=True, text=True,
                           cwd=tmp_path, env=alone)
    assert check.stdout.split() == [sdk_version(), "True"], check.stderr  # installed, and no Django at all
    result = _run_examples(python, network)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 200, response signature verified" in result.stdout
