"""Offline checks of infra/: Dockerfiles (hadolint), every manifest rendered from each kustomize
overlay (kubernetes-validate --strict against Kubernetes 1.30; SparkApplications against the
project's JSON schema), yamllint, and the GPU discovery script against a fake nvidia-smi."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from vidx.deploy import kustomize

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.30.0"
BIN = Path(sys.executable).parent
SCHEMA = json.loads((K8S / "schema" / "sparkapplication.schema.json").read_text())


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def rendered(overlay: str) -> list[dict]:
    """kubectl kustomize when it is on PATH (what users apply), else vidx's own renderer."""
    path = K8S / "overlays" / overlay
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True,
                             check=True).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    return kustomize.render(path)


def _by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_dockerfiles_pass_hadolint():
    files = sorted((INFRA / "docker").glob("*Dockerfile"))
    assert len(files) >= 2
    run = subprocess.run([_tool("hadolint"), "--no-color", *map(str, files)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_manifests_pass_kubernetes_validate_strict(overlay, tmp_path):
    docs = rendered(overlay)
    builtin = [d for d in docs if d["kind"] != "SparkApplication"]
    templates = [yaml.safe_load(p.read_text()) for p in sorted((K8S / "spark").glob("*-pod-template.yaml"))]
    target = tmp_path / f"{overlay}.yaml"
    target.write_text(yaml.safe_dump_all(builtin + templates))
    run = subprocess.run([_tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(target)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    apps = [d for d in docs if d["kind"] == "SparkApplication"]
    assert sorted(a["metadata"]["name"] for a in apps) == ["vidx-build-index", "vidx-embed"]
    for app in apps:
        jsonschema.validate(app, SCHEMA)


def test_sparkapplication_schema_rejects_what_spark_or_the_operator_would():
    app = _by_kind(rendered("prod"), "SparkApplication")["vidx-embed"]
    jsonschema.validate(app, SCHEMA)
    vendor_only = copy.deepcopy(app)
    vendor_only["spec"]["sparkConf"]["spark.executor.resource.gpu.vendor"] = "nvidia.com"  # Spark: "specify an amount"
    typo = copy.deepcopy(app)
    typo["spec"]["executor"]["instance"] = 2
    for bad in (vendor_only, typo):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_overlays_say_what_the_deployment_promises():
    dev, prod = rendered("dev"), rendered("prod")
    for docs, replicas, device in ((dev, 1, "cpu"), (prod, 3, "cuda")):
        query = _by_kind(docs, "Deployment")["vidx-query"]
        container = query["spec"]["template"]["spec"]["containers"][0]
        assert query["spec"]["replicas"] == replicas
        assert _by_kind(docs, "HorizontalPodAutoscaler")["vidx-query"]["spec"]["minReplicas"] == replicas
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert query["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        env = {e["name"]: e for e in container["env"]}
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "vidx-s3"
        assert _by_kind(docs, "ConfigMap")["vidx-warehouse"]["data"]["warehouse"].startswith("s3://")
        embed = _by_kind(docs, "SparkApplication")["vidx-embed"]["spec"]
        assert {e["name"]: e.get("value") for e in embed["executor"]["env"]}["VIDX_ENCODE__DEVICE"] == device
    embed = _by_kind(prod, "SparkApplication")["vidx-embed"]["spec"]
    assert embed["dynamicAllocation"]["enabled"] is True  # the GPU resource profile needs it
    build = _by_kind(prod, "SparkApplication")["vidx-build-index"]["spec"]
    assert build["sparkConf"]["spark.executor.resource.gpu.vendor"] == "nvidia.com"
    assert _by_kind(prod, "PodDisruptionBudget")["vidx-query"]["spec"] == {
        "minAvailable": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": "vidx-query"}}}
    patch = yaml.safe_load((K8S / "overlays" / "prod" / "query-resources.yaml").read_text())
    resources = patch["spec"]["template"]["spec"]["containers"][0]["resources"]
    prod_query = _by_kind(prod, "Deployment")["vidx-query"]["spec"]["template"]["spec"]["containers"][0]
    assert prod_query["resources"] == resources


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH: nothing to compare with")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_own_renderer_matches_kubectl_kustomize(overlay):
    def key(d: dict) -> tuple:
        return d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]

    ours = {key(d): d for d in kustomize.render(K8S / "overlays" / overlay)}
    theirs = {key(d): d for d in rendered(overlay)}
    assert ours == theirs


def test_yamllint_passes_on_infra():
    run = subprocess.run([_tool("yamllint"), "-f", "parsable", "-c", str(INFRA / ".yamllint.yaml"), str(INFRA)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def _fake_nvidia_smi(tmp_path: Path, body: str) -> dict[str, str]:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}


@pytest.mark.parametrize(("output", "addresses"), [("0\n1\n3\n", ["0", "1", "3"]), ("", [])])
def test_gpu_discovery_script_reports_what_nvidia_smi_sees(tmp_path, output, addresses):
    body = ('[ "$*" = "--query-gpu=index --format=csv,noheader" ] || exit 9\n'
            f"printf '{output}'\n")
    run = subprocess.run(["bash", str(K8S / "spark" / "gpu-discovery.sh")], env=_fake_nvidia_smi(tmp_path, body),
                         capture_output=True, text=True, check=True)
    assert json.loads(run.stdout) == {"name": "gpu", "addresses": addresses}


def test_gpu_discovery_script_fails_when_nvidia_smi_does(tmp_path):
    env = _fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 6\n")
    run = subprocess.run(["bash", str(K8S / "spark" / "gpu-discovery.sh")], env=env, capture_output=True, text=True,
                         check=False)
    assert run.returncode != 0 and run.stdout == ""


def test_shell_scripts_parse():
    scripts = [*sorted(INFRA.rglob("*.sh")), ROOT / "bench" / "gpu_check.sh"]
    for script in scripts:
        run = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert run.returncode == 0, f"{script}: {run.stderr}"
