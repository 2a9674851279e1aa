"""The deployment files (deploy/) render, and everything they run exists in this project.

No container engine runs here: the Dockerfile, compose file, HAProxy config and the
Kubernetes manifests (rendered with `kubectl kustomize`, else read as plain YAML) are
parsed, and every command they run is checked against the project: manage.py commands
exist and accept their arguments, the launcher exists, health-check paths resolve to the
health views with a Host the service allows, and every environment variable they set is
one the settings or the launcher read. The operator-facing promises are pinned too: production mode,
trusted proxies named, /metrics narrowed, a liveness check that no connection flood can
fail. (HAProxy's behaviour is tested by running it: tests/ops/test_haproxy_topology.py.)
"""

import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands, load_command_class
from django.urls import resolve

from authservice import views

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SECRET_VARIABLES = {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "AUTHSERVICE_KEY_ENCRYPTION_KEY",
                    "AUTHSERVICE_AUDIT_KEY"}
# Read by the Python interpreter itself, not by the project.
INTERPRETER_VARIABLES = {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
SYSTEM_COMMANDS = {"sleep"}  # present in python:3.11-slim
# Given as files (Docker or Kubernetes secrets): NAME_FILE names the file holding NAME.
FILE_SECRETS = {"DJANGO_SECRET_KEY", "AUTHSERVICE_KEY_ENCRYPTION_KEY"}


def variables_the_project_reads() -> set[str]:
    pattern = re.compile(r"""(?:environ\.get|env_bool|env_list|env_secret|environ\.setdefault|environ)\(?\[?"""
                         r"""["']([A-Z0-9_]+)["']""")
    secrets = re.compile(r"""env_secret\(["']([A-Z0-9_]+)["']""")
    names: set[str] = set()
    for path in ROOT.joinpath("authservice").rglob("*.py"):
        text = path.read_text()
        names |= set(pattern.findall(text))
        # A secret may be given as a file: NAME_FILE (test_settings_read_secret_files runs it).
        names |= {f"{name}_FILE" for name in secrets.findall(text)}
    return names


def check_command(command: list[str]) -> None:
    """Fails unless ``command`` is something this project (or the base image) can run."""
    assert command, "empty command"
    if command[0] == "python" and command[1:2] == ["manage.py"]:
        name, arguments = command[2], command[3:]
        commands = get_commands()
        assert name in commands, f"manage.py has no command {name!r}"
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        parser.parse_args(arguments)  # SystemExit (a failure here) on an unknown flag
    elif command[:3] == ["python", "-m", "authservice.serve"]:
        assert len(command) == 3, f"the launcher takes its settings from the environment: {command}"
        assert find_spec("authservice.serve") is not None
    elif command[:2] == ["python", "-c"]:
        compile(command[2], "<probe>", "exec")
    else:
        assert command[0] in SYSTEM_COMMANDS, f"unknown command {command}"


# --- Kubernetes ---------------------------------------------------------------------------------

def render_k8s() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl:
        output = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True, text=True,
                                check=True, timeout=120).stdout
        return [doc for doc in yaml.safe_load_all(output) if doc]
    # Without kubectl: the listed resources as written, and the generated ConfigMap.
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    docs = [yaml.safe_load((DEPLOY / "k8s" / name).read_text()) for name in kustomization["resources"]]
    for generator in kustomization.get("configMapGenerator", []):
        data = dict(item.split("=", 1) for item in generator["literals"])
        docs.append({"kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    return docs


@pytest.fixture(scope="module")
def k8s() -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = {}
    for doc in render_k8s():
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def pod_containers(pod_spec: dict) -> list[dict]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def config_map(k8s) -> dict:
    (config,) = k8s["ConfigMap"]
    return config["data"]


def test_manifests_render_with_every_kind(k8s):
    assert {"Deployment", "Job", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap"} <= set(k8s)
    assert "Secret" not in k8s, "secrets are referenced, never committed"


def secret_volume_paths(pod_spec: dict, container: dict) -> set[str]:
    """The files a container sees from Secret volumes."""
    secrets = {volume["name"]: volume["secret"] for volume in pod_spec.get("volumes", []) if "secret" in volume}
    paths = set()
    for mount in container.get("volumeMounts", []):
        if mount["name"] in secrets:
            paths |= {f"{mount['mountPath']}/{item['path']}" for item in secrets[mount["name"]]["items"]}
    return paths


def test_secrets_only_by_reference(k8s):
    for workload in [*k8s["Deployment"], *k8s["Job"]]:
        pod_spec = workload["spec"]["template"]["spec"]
        for container in pod_containers(pod_spec):
            env = {item["name"]: item for item in container.get("env", [])}
            for name in SECRET_VARIABLES & set(env):
                assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], name
            assert "DATABASE_URL" in env
            # The two keys: as files from a Secret volume, out of the process environment.
            for name in FILE_SECRETS:
                assert name not in env, name
                assert env[f"{name}_FILE"]["value"] in secret_volume_paths(pod_spec, container), name
    assert not SECRET_VARIABLES & set(config_map(k8s))


def test_production_mode_everywhere(k8s, compose):
    assert config_map(k8s)["AUTHSERVICE_ENV"] == "production"
    for service in app_services(compose).values():
        assert service["environment"]["AUTHSERVICE_ENV"] == "production"
    envs = dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(v for k, v in dockerfile_instructions() if k == "ENV")))
    assert envs["AUTHSERVICE_ENV"] == "production"


@pytest.mark.ops
def test_settings_read_secret_files(tmp_path):
    """What compose.yaml and the k8s files rely on: AUTHSERVICE_ENV=production with the two keys
    given only as files starts, and reads them."""
    (tmp_path / "secret").write_text("secret-from-a-file-0123456789abcdef0123456789abcdef\n")
    kek = "WbcFQu2ZP8egqUg1t1_JFoEalF4nCVuFOi_gvrCQP9s="  # a Fernet key, as operators generate it
    (tmp_path / "kek").write_text(kek + "\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTHSERVICE_"))},
           "AUTHSERVICE_ENV": "production", "DJANGO_SECRET_KEY_FILE": str(tmp_path / "secret"),
           "AUTHSERVICE_KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "kek"), "AUTHSERVICE_VAR_DIR": str(tmp_path / "var"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "REDIS_URL": "",
           "DJANGO_SETTINGS_MODULE": "authservice.settings"}
    code = ("import django; django.setup(); from django.conf import settings; "
            "from authservice.conf import authservice_settings as a; "
            "print(settings.SECRET_KEY); print(a.KEY_ENCRYPTION_KEYS[0])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["secret-from-a-file-0123456789abcdef0123456789abcdef", kek]
    assert not (tmp_path / "var").exists() or not any((tmp_path / "var").rglob("*secret*"))


def test_trusted_proxies_are_set_by_the_operator_and_checked(k8s, settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from authservice.conf import authservice_settings

    value = config_map(k8s)["AUTHSERVICE_TRUSTED_PROXIES"]
    # Shipped as a placeholder: nothing starts until it is set (the pods' first init container and
    # the migration Job run `manage.py check`, which names the setting).
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "TRUSTED_PROXIES": value.split(",")}
    authservice_settings.reload()
    try:
        with pytest.raises(SystemCheckError, match="TRUSTED_PROXIES"):
            call_command("check")
    finally:
        authservice_settings.reload()
    (deployment,) = k8s["Deployment"]
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["initContainers"][0]["command"] == ["python", "manage.py", "check"]
    (server,) = pod_spec["containers"]
    assert pod_spec["initContainers"][0]["env"] == server["env"]


def test_metrics_are_allowed_to_a_narrow_list(k8s):
    for entry in config_map(k8s)["AUTHSERVICE_METRICS_ALLOWED_IPS"].split(","):
        network = ipaddress.ip_network(entry.strip(), strict=False)
        assert network.is_loopback or network.num_addresses <= 256, f"{entry}: name Prometheus, not a whole range"


def test_every_command_exists(k8s):
    commands = [container.get("command", []) + container.get("args", [])
                for workload in [*k8s["Deployment"], *k8s["Job"]]
                for container in pod_containers(workload["spec"]["template"]["spec"])]
    containers = [container for workload in k8s["Deployment"]
                  for container in workload["spec"]["template"]["spec"]["containers"]]
    hooks = [container["lifecycle"]["preStop"]["exec"]["command"] for container in containers
             if "lifecycle" in container]
    probes = [container[probe]["exec"]["command"] for container in containers
              for probe in ("livenessProbe", "readinessProbe") if "exec" in container.get(probe, {})]
    assert hooks and probes
    for command in commands + hooks + probes:
        check_command(command)
    (job,) = k8s["Job"]
    steps = [c["command"][2] for c in pod_containers(job["spec"]["template"]["spec"])]
    assert steps == ["migrate", "bootstrap"]


def test_probes_reach_the_health_views(k8s, client, settings):
    (deployment,) = k8s["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    allowed_hosts = config_map(k8s)["ALLOWED_HOSTS"].split(",")
    get = container["readinessProbe"]["httpGet"]
    assert get["path"] == "/readyz" and resolve(get["path"]).func == views.readyz
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert get["port"] in ports
    (host,) = [h["value"] for h in get["httpHeaders"] if h["name"] == "Host"]
    assert host in allowed_hosts
    # The readiness probe as the kubelet sends it (plain http, that Host) reaches the view.
    settings.ALLOWED_HOSTS = allowed_hosts
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    assert client.get("/healthz", HTTP_HOST=host).status_code == 200
    assert client.get("/healthz", HTTP_HOST="10.0.0.7:8000").status_code == 400  # why the probe sends a Host


@pytest.mark.ops
def test_liveness_cannot_be_failed_by_a_connection_flood(k8s, tmp_path):
    """Liveness does not go through the listener a flood fills: it checks that the launcher
    (PID 1 in the container) has a live worker process. Run here against a stand-in for PID 1."""
    (deployment,) = k8s["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    probe = container["livenessProbe"]
    assert "httpGet" not in probe and "tcpSocket" not in probe
    command = probe["exec"]["command"]
    assert command[:2] == ["python", "-c"] and "/proc/1/task/1/children" in command[2]
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 30
    assert "readinessProbe" in container  # a busy or cut-off pod leaves the endpoints instead

    def run_probe_for(pid: int) -> int:
        code = command[2].replace("/proc/1/task/1/", f"/proc/{pid}/task/{pid}/")
        return subprocess.run([sys.executable, "-c", code], timeout=30, check=False).returncode

    launcher = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; w = subprocess.Popen(['sleep', '30']); "
                                 "sys.stdin.readline(); w.kill(); w.wait(); sys.stdin.readline()"],
                                stdin=subprocess.PIPE, text=True)
    try:
        deadline = 50
        while not Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split() and deadline:
            deadline -= 1
            time.sleep(0.1)
        assert run_probe_for(launcher.pid) == 0  # a live worker
        launcher.stdin.write("\n")
        launcher.stdin.flush()
        deadline = 50
        while Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split() and deadline:
            deadline -= 1
            time.sleep(0.1)
        assert run_probe_for(launcher.pid) == 1  # none left
    finally:
        launcher.kill()
        launcher.wait(timeout=10)


def test_selectors_and_targets_match(k8s):
    (deployment,) = k8s["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [deployment["spec"]["selector"]["matchLabels"], k8s["Service"][0]["spec"]["selector"],
                 k8s["PodDisruptionBudget"][0]["spec"]["selector"]["matchLabels"]]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    (job,) = k8s["Job"]
    assert not k8s["Service"][0]["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    target = k8s["HorizontalPodAutoscaler"][0]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert k8s["Service"][0]["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] != 0


def test_k8s_sets_only_variables_the_project_reads(k8s):
    known = variables_the_project_reads()
    names = set(config_map(k8s))
    for workload in [*k8s["Deployment"], *k8s["Job"]]:
        for container in pod_containers(workload["spec"]["template"]["spec"]):
            names |= {item["name"] for item in container.get("env", [])}
    assert names - known == set()


# --- Compose and HAProxy ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def app_services(compose) -> dict[str, dict]:
    return {name: service for name, service in compose["services"].items() if "build" in service}


def test_compose_services_and_order(compose):
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "bootstrap", "app1", "app2", "haproxy"} <= set(services)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["bootstrap"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("app1", "app2"):
        assert services[name]["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    for name, service in app_services(compose).items():
        check_command(service["command"])
        context = (DEPLOY / service["build"]["context"]).resolve()
        assert context == ROOT and (context / service["build"]["dockerfile"]).is_file(), name
    healthcheck = services["app1"]["healthcheck"]["test"]
    assert "/healthz" in healthcheck[-1]


def test_compose_secrets_come_from_the_environment(compose):
    known = variables_the_project_reads()
    declared = compose["secrets"]
    for service in app_services(compose).values():
        environment = service["environment"]
        assert set(environment) - known == set()
        for name in SECRET_VARIABLES & set(environment):
            value = environment[name]
            # From .env (interpolated), or a URL that carries no credential (compose's own Redis).
            assert "${" in value or (name.endswith("_URL") and "@" not in value), f"{name} must come from .env"
        # The two keys: Docker secrets (files under /run/secrets), filled from .env.
        for name in FILE_SECRETS:
            assert name not in environment
            path = environment[f"{name}_FILE"]
            secret = path.removeprefix("/run/secrets/")
            assert secret in service["secrets"] and declared[secret] == {"environment": name}, name
    assert "${" in compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_compose_trusts_exactly_the_proxy(compose):
    """The instances believe X-Forwarded-For from HAProxy's fixed address alone, and no other
    container can be given that address."""
    (haproxy_address,) = [network["ipv4_address"] for network in compose["services"]["haproxy"]["networks"].values()]
    (network_name,) = compose["services"]["haproxy"]["networks"]
    (pool,) = compose["networks"][network_name]["ipam"]["config"]
    address = ipaddress.ip_address(haproxy_address)
    assert address in ipaddress.ip_network(pool["subnet"]) and address not in ipaddress.ip_network(pool["ip_range"])
    for name, service in app_services(compose).items():
        assert service["environment"]["AUTHSERVICE_TRUSTED_PROXIES"] == haproxy_address, name
        assert service["networks"] == [network_name], name


def haproxy_defaults(config: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*presetenv (\S+) (\S+)", config, re.M))


def test_haproxy_config_checks_readyz_on_both_instances(compose):
    config = (DEPLOY / "haproxy.cfg").read_text()
    haproxy = shutil.which("haproxy")
    if haproxy:
        # Syntax check; the compose service names need not resolve here (init-addr ... none).
        result = subprocess.run([haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True,
                                text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    defaults = haproxy_defaults(config)
    servers = dict(re.findall(r'^\s*server (\S+) "\$\{(\w+)\}" check', config, re.M))
    assert set(servers) == {"app1", "app2"}
    for name, variable in servers.items():
        host, _, port = defaults[variable].rpartition(":")
        assert host == name and name in compose["services"]
        assert port == compose["services"][name]["environment"].get("GUNICORN_BIND", "0.0.0.0:8000").rsplit(":")[1]
    (uri,) = re.findall(r"http-check send meth GET uri (\S+)", config)
    assert resolve(uri).func == views.readyz
    (host,) = re.findall(r"hdr Host (\S+)", config)
    assert host in compose["services"]["app1"]["environment"]["ALLOWED_HOSTS"].split(",")
    port = defaults["LB_BIND"].rpartition(":")[2]
    assert f"{port}:{port}" in compose["services"]["haproxy"]["ports"]


def test_haproxy_config_names_its_limits_and_retries():
    """What tests/ops/test_haproxy_topology.py shows working, written where an operator reads it."""
    config = (DEPLOY / "haproxy.cfg").read_text()
    directives = {line.split()[0] if line.split()[0] not in {"timeout", "option", "http-request"} else
                  " ".join(line.split()[:2]) for line in config.splitlines() if line.strip() and
                  not line.strip().startswith("#")}
    assert {"maxconn", "timeout http-request", "timeout http-keep-alive", "timeout client", "timeout queue",
            "option forwardfor", "option redispatch", "option http-buffer-request", "retry-on", "http-request deny",
            "http-request disable-l7-retry"} <= directives
    (retry_on,) = re.findall(r"^\s*retry-on (.+)$", config, re.M)
    assert set(retry_on.split()) == {"conn-failure", "empty-response"}
    assert re.search(r"default-server .*\bmaxconn \d+", config)


# --- Dockerfile -------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_runs_as_non_root_and_serves_with_the_project_config():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    (user,) = [value for kind, value in instructions if kind == "USER"]
    assert user not in {"root", "0"}
    users = [kind for kind, _ in instructions]
    assert users.index("USER") > max(i for i, kind in enumerate(users) if kind == "RUN")
    (cmd,) = [value for kind, value in instructions if kind == "CMD"]
    check_command(yaml.safe_load(cmd))
    for kind, value in instructions:
        if kind == "COPY":
            for source in value.split()[:-1]:
                assert (ROOT / source).exists(), source
        if kind == "RUN" and "manage.py" in value:
            for part in value.split("&&"):
                words = shlex.split(part)
                if "manage.py" in words:
                    at = words.index("manage.py")
                    check_command(["python", *words[at:]])
        if kind == "ENV":
            names = set(re.findall(r"([A-Z_]+)=", value))
            assert names - variables_the_project_reads() - INTERPRETER_VARIABLES == set()
