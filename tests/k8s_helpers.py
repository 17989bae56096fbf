"""Offline helpers of tests/test_k8s_manifests.py: render a Kustomize tree, check a KubeRay RayJob,
run checkov, read the README's list of accepted checkov failures.

Rendering uses ``kustomize build`` or ``kubectl kustomize`` when one is on PATH; otherwise
:func:`render_python`, a small renderer of the Kustomize features these manifests use
(``resources``, ``namespace``, ``images``, ``replicas``, strategic-merge ``patches``), which the
tests compare with the real one where both exist.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
CLUSTER_SCOPED = {"Namespace"}


# ------------------------------------------------------------------------------ rendering
def kustomize_command() -> list[str] | None:
    """The real Kustomize on this machine (``kustomize build`` or ``kubectl kustomize``), or None."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path) -> list[dict[str, Any]]:
    """The documents of a kustomization: the real Kustomize when available, else :func:`render_python`."""
    command = kustomize_command()
    if command is None:
        return render_python(directory)
    out = subprocess.run([*command, str(directory)], capture_output=True, text=True, check=True, timeout=120)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as far as these manifests need it: maps merge, lists of named maps merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    named = lambda xs: isinstance(xs, list) and xs and all(isinstance(x, dict) and "name" in x for x in xs)  # noqa: E731
    if named(base) and named(patch):
        out = [copy.deepcopy(x) for x in base]
        index = {x["name"]: i for i, x in enumerate(out)}
        for item in patch:
            if item["name"] in index:
                out[index[item["name"]]] = _merge(out[index[item["name"]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("containers", []), *spec.get("initContainers", [])]


def render_python(directory: Path) -> list[dict[str, Any]]:
    """Render ``directory/kustomization.yaml`` with the subset of Kustomize the manifests use."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches"}
    unknown = set(kustomization) - known
    if unknown:
        raise ValueError(f"{directory}: kustomization fields {sorted(unknown)} are not supported; supported: {sorted(known)}")
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        docs.extend(render_python(path) if path.is_dir() else load_documents(path))
    for entry in kustomization.get("patches", []):
        patch = yaml.safe_load((directory / entry["path"]).read_text())
        targets = [i for i, d in enumerate(docs)
                   if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]]
        if len(targets) != 1:
            raise ValueError(f"patch {entry['path']}: {len(targets)} targets named {patch['metadata']['name']!r}")
        docs[targets[0]] = _merge(docs[targets[0]], patch)
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in _pod_containers(doc):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for replicas in kustomization.get("replicas", []):
        for doc in docs:
            if doc["metadata"]["name"] == replicas["name"] and "replicas" in doc.get("spec", {}):
                doc["spec"]["replicas"] = replicas["count"]
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(kind, name): document}``; a duplicate key is an error."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        if key in out:
            raise ValueError(f"two documents are {key}")
        out[key] = doc
    return out


# ------------------------------------------------------------------------------ RayJob (KubeRay ray.io/v1)
# The fields of KubeRay's ray.io/v1 API types (ray-operator/apis/ray/v1: RayJobSpec, RayClusterSpec,
# HeadGroupSpec, WorkerGroupSpec, SubmitterConfig) with their JSON types; the pod templates in them
# are core/v1 PodTemplateSpecs, checked with the Kubernetes schemas (PodTemplate) by the tests.
_INT, _STR, _BOOL, _MAP, _LIST, _OBJ, _NUM = "int", "str", "bool", "map[str]str", "list", "object", "number"
RAYJOB_SPEC = {
    "activeDeadlineSeconds": _INT, "backoffLimit": _INT, "rayClusterSpec": _OBJ, "submitterPodTemplate": _OBJ,
    "metadata": _MAP, "clusterSelector": _MAP, "submitterConfig": _OBJ, "managedBy": _STR,
    "deletionStrategy": _OBJ, "entrypoint": _STR, "runtimeEnvYAML": _STR, "jobId": _STR,
    "submissionMode": _STR, "entrypointResources": _STR, "entrypointNumCpus": _NUM, "entrypointNumGpus": _NUM,
    "ttlSecondsAfterFinished": _INT, "shutdownAfterJobFinishes": _BOOL, "suspend": _BOOL, "schedule": _STR,
}
RAYCLUSTER_SPEC = {
    "headGroupSpec": _OBJ, "workerGroupSpecs": _LIST, "rayVersion": _STR, "enableInTreeAutoscaling": _BOOL,
    "autoscalerOptions": _OBJ, "headServiceAnnotations": _MAP, "suspend": _BOOL,
}
HEAD_GROUP_SPEC = {"serviceType": _STR, "headService": _OBJ, "enableIngress": _BOOL, "rayStartParams": _MAP,
                   "template": _OBJ}
WORKER_GROUP_SPEC = {"groupName": _STR, "replicas": _INT, "minReplicas": _INT, "maxReplicas": _INT,
                     "numOfHosts": _INT, "rayStartParams": _MAP, "template": _OBJ, "scaleStrategy": _OBJ}
SUBMITTER_CONFIG = {"backoffLimit": _INT}
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


def _type_ok(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _MAP:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return isinstance(value, {_STR: str, _BOOL: bool, _LIST: list, _OBJ: dict}[kind])


def _check_fields(obj: Any, fields: dict[str, str], where: str, required: tuple[str, ...] = ()) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: expected an object, got {type(obj).__name__}"]
    errors = [f"{where}.{key}: unknown field; KubeRay's fields: {sorted(fields)}" for key in obj if key not in fields]
    errors += [f"{where}.{key}: expected {fields[key]}, got {obj[key]!r}"
               for key in obj if key in fields and not _type_ok(obj[key], fields[key])]
    errors += [f"{where}.{key}: required" for key in required if key not in obj]
    return errors


def rayjob_errors(doc: dict[str, Any]) -> list[str]:
    """Structural errors of a RayJob against KubeRay's ray.io/v1 types (empty list = valid)."""
    errors: list[str] = []
    if doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") != "RayJob":
        errors.append(f"apiVersion/kind {doc.get('apiVersion')}/{doc.get('kind')}; expected ray.io/v1 RayJob")
    errors += _check_fields(doc, {"apiVersion": _STR, "kind": _STR, "metadata": _OBJ, "spec": _OBJ}, "RayJob",
                            ("metadata", "spec"))
    spec = doc.get("spec", {})
    errors += _check_fields(spec, RAYJOB_SPEC, "spec", ("entrypoint",))
    if spec.get("submissionMode", "K8sJobMode") not in SUBMISSION_MODES:
        errors.append(f"spec.submissionMode {spec['submissionMode']!r}; accepted: {SUBMISSION_MODES}")
    if "rayClusterSpec" not in spec and "clusterSelector" not in spec:
        errors.append("spec: needs rayClusterSpec (a new cluster) or clusterSelector (an existing one)")
    if "submitterConfig" in spec:
        errors += _check_fields(spec["submitterConfig"], SUBMITTER_CONFIG, "spec.submitterConfig")
    cluster = spec.get("rayClusterSpec")
    if isinstance(cluster, dict):
        errors += _check_fields(cluster, RAYCLUSTER_SPEC, "spec.rayClusterSpec", ("headGroupSpec",))
        head = cluster.get("headGroupSpec", {})
        errors += _check_fields(head, HEAD_GROUP_SPEC, "spec.rayClusterSpec.headGroupSpec",
                                ("rayStartParams", "template"))
        if head.get("serviceType", "ClusterIP") not in SERVICE_TYPES:
            errors.append(f"headGroupSpec.serviceType {head['serviceType']!r}; accepted: {SERVICE_TYPES}")
        for i, group in enumerate(cluster.get("workerGroupSpecs", [])):
            errors += _check_fields(group, WORKER_GROUP_SPEC, f"spec.rayClusterSpec.workerGroupSpecs[{i}]",
                                    ("groupName", "rayStartParams", "template"))
    return errors


def rayjob_pod_templates(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: PodTemplateSpec}`` of a RayJob: head, each worker group, the submitter."""
    spec = doc["spec"]
    out = {"head": spec["rayClusterSpec"]["headGroupSpec"]["template"]}
    for group in spec["rayClusterSpec"].get("workerGroupSpecs", []):
        out[f"worker-{group['groupName']}"] = group["template"]
    if "submitterPodTemplate" in spec:
        out["submitter"] = spec["submitterPodTemplate"]
    return out


def as_pod(doc: dict[str, Any], name: str, template: dict[str, Any]) -> dict[str, Any]:
    """A RayJob's pod template as a core/v1 Pod (for checkov, which does not read CRDs)."""
    metadata = {"name": f"{doc['metadata']['name']}-{name}", "namespace": doc["metadata"]["namespace"],
                **({"labels": template["metadata"]["labels"]} if template.get("metadata", {}).get("labels") else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": copy.deepcopy(template["spec"])}


# ------------------------------------------------------------------------------ checkov
def checkov_binary() -> str | None:
    """checkov from $CHECKOV, the git-ignored tools venv (``make k8s-tools``), or PATH."""
    for candidate in (os.environ.get("CHECKOV"), str(ROOT / ".venv-tools" / "bin" / "checkov"), shutil.which("checkov")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def run_checkov(binary: str, manifest: Path) -> dict[str, Any]:
    """``checkov --framework kubernetes`` over one file, offline; its JSON report."""
    result = subprocess.run(
        [binary, "--file", str(manifest), "--framework", "kubernetes", "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    if result.returncode not in (0, 1):  # 1 = some check failed
        raise RuntimeError(f"checkov exited {result.returncode}: {result.stderr[-3000:]}")
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def readme_accepted_failures(readme: Path) -> dict[tuple[str, str], str]:
    """``{(check id, resource): reason}`` from the README's table rows ``| CKV_... | `Kind.ns.name` | why |``."""
    out: dict[tuple[str, str], str] = {}
    for line in readme.read_text().splitlines():
        m = re.match(r"^\|\s*`?(CKV2?_K8S_\d+)`?\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*$", line)
        if m:
            for resource in re.findall(r"`([^`]+)`", m.group(2)):
                out[(m.group(1), resource)] = m.group(3)
    return out
