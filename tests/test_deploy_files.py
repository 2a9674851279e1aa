"""The deployment files (deploy/) render, and everything they run exists in this project.

No container engine runs here: the Dockerfile, compose file, HAProxy config and the
Kubernetes manifests (rendered with `kubectl kustomize`, else read as plain YAML) are
parsed, and every command they run is checked against the project: manage.py commands
exist and accept their arguments, the launcher exists, health-check paths resolve to the
health views with a Host the service allows, and every environment variable they set is
one the settings or the launcher read.
"""

import re
import shlex
import shutil
import subprocess
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


def variables_the_project_reads() -> set[str]:
    pattern = re.compile(r"""(?:environ\.get|env_bool|env_list|environ\.setdefault|environ)\(?\[?"""
                         r"""["']([A-Z0-9_]+)["']""")
    names: set[str] = set()
    for path in ROOT.joinpath("authservice").rglob("*.py"):
        names |= set(pattern.findall(path.read_text()))
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
        from authservice import serve

        assert len(command) == 3, f"the launcher takes its settings from the environment: {command}"
        assert serve.DEFAULT_SERVER in serve.SERVERS
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


def test_secrets_only_by_reference(k8s):
    for workload in [*k8s["Deployment"], *k8s["Job"]]:
        for container in pod_containers(workload["spec"]["template"]["spec"]):
            env = {item["name"]: item for item in container.get("env", [])}
            for name in SECRET_VARIABLES & set(env):
                assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], name
            assert {"DATABASE_URL", "DJANGO_SECRET_KEY", "AUTHSERVICE_KEY_ENCRYPTION_KEY"} <= set(env)
    assert not SECRET_VARIABLES & set(config_map(k8s))


def test_every_command_exists(k8s):
    commands = [container.get("command", []) + container.get("args", [])
                for workload in [*k8s["Deployment"], *k8s["Job"]]
                for container in pod_containers(workload["spec"]["template"]["spec"])]
    hooks = [container["lifecycle"]["preStop"]["exec"]["command"] for workload in k8s["Deployment"]
             for container in workload["spec"]["template"]["spec"]["containers"] if "lifecycle" in container]
    for command in commands + hooks:
        check_command(command)
    (job,) = k8s["Job"]
    steps = [c["command"][2] for c in pod_containers(job["spec"]["template"]["spec"])]
    assert steps == ["migrate", "bootstrap"]


def test_probes_reach_the_health_views(k8s, client, settings):
    (deployment,) = k8s["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    allowed_hosts = config_map(k8s)["ALLOWED_HOSTS"].split(",")
    expected = {"livenessProbe": ("/healthz", views.healthz), "readinessProbe": ("/readyz", views.readyz)}
    for probe, (path, view) in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and resolve(get["path"]).func == view
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert get["port"] in ports
        (host,) = [h["value"] for h in get["httpHeaders"] if h["name"] == "Host"]
        assert host in allowed_hosts
    # The liveness probe as the kubelet sends it (plain http, that Host) answers 200.
    settings.ALLOWED_HOSTS = allowed_hosts
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    host = container["livenessProbe"]["httpGet"]["httpHeaders"][0]["value"]
    assert client.get("/healthz", HTTP_HOST=host).status_code == 200
    assert client.get("/healthz", HTTP_HOST="10.0.0.7:8000").status_code == 400  # why the probes send a Host


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
    for service in app_services(compose).values():
        environment = service["environment"]
        assert set(environment) - known == set()
        for name in SECRET_VARIABLES & set(environment):
            value = environment[name]
            # From .env (interpolated), or a URL that carries no credential (compose's own Redis).
            assert "${" in value or (name.endswith("_URL") and "@" not in value), f"{name} must come from .env"
    assert "${" in compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_haproxy_config_checks_readyz_on_both_instances(compose):
    config = (DEPLOY / "haproxy.cfg").read_text()
    haproxy = shutil.which("haproxy")
    if haproxy:
        # Syntax check; the compose service names need not resolve here (init-addr ... none).
        result = subprocess.run([haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True,
                                text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    servers = re.findall(r"^\s*server (\S+) (\S+):(\d+) check", config, re.M)
    assert {name for name, _, _ in servers} == {"app1", "app2"} == {host for _, host, _ in servers}
    (uri,) = re.findall(r"http-check send meth GET uri (\S+)", config)
    assert resolve(uri).func == views.readyz
    (host,) = re.findall(r"hdr Host (\S+)", config)
    assert host in compose["services"]["app1"]["environment"]["ALLOWED_HOSTS"].split(",")
    port = re.search(r"bind :(\d+)", config).group(1)
    assert f"{port}:{port}" in compose["services"]["haproxy"]["ports"]


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
