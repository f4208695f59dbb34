"""Render a kustomize overlay without kubectl: the subset of kustomize infra/k8s uses.

Supported kustomization fields: `resources` (files and directories with their own kustomization),
`namespace`, `labels` (pairs, includeSelectors: false, includeTemplates), `images` (newName,
newTag, digest), `replicas`, and `patches` given as a file `path` or inline `patch` holding a
strategic-merge patch. Built-in kinds merge lists by their patch merge key (containers by name,
...), custom resources (SparkApplication) by JSON merge patch (RFC 7386: lists are replaced, null
deletes), as kustomize does. Anything else in a kustomization raises, so the subset cannot
silently drift from what kubectl would render (a test compares the two where kubectl exists).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from vidx.errors import ConfigError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass"}
# Built-in kinds whose pod template kustomize labels with includeTemplates.
TEMPLATED = {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"}
REPLICATED = {"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"}
# Strategic-merge keys of the lists infra/k8s patches (Kubernetes' patchMergeKey of each field).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "imagePullSecrets": "name"}
BUILTIN_GROUPS = ("v1", "apps/", "batch/", "policy/", "autoscaling/", "rbac.authorization.k8s.io/",
                  "networking.k8s.io/")

Doc = dict[str, Any]


def render(path: str | Path) -> list[Doc]:
    """The resources of the kustomization in directory `path`, transformed as kustomize would."""
    root = Path(path)
    kfile = next((root / n for n in KUSTOMIZATION_FILES if (root / n).is_file()), None)
    if kfile is None:
        raise ConfigError(f"{root} has no kustomization.yaml")
    spec = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise ConfigError(f"{kfile}: fields {sorted(unknown)} are outside vidx's kustomize subset; "
                          "use `kubectl kustomize`")
    docs: list[Doc] = []
    for item in spec.get("resources", []):
        target = root / item
        docs.extend(render(target) if target.is_dir() else _load(target))
    for entry in spec.get("patches", []):
        _apply_patch(docs, _patch_doc(root, entry))
    if "namespace" in spec:
        _set_namespace(docs, spec["namespace"])
    for group in spec.get("labels", []):
        _add_labels(docs, group)
    for image in spec.get("images", []):
        _set_image(docs, image)
    for rep in spec.get("replicas", []):
        _set_replicas(docs, rep["name"], int(rep["count"]))
    return docs


def render_yaml(path: str | Path) -> str:
    return yaml.safe_dump_all(render(path), sort_keys=False)


def _load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _patch_doc(root: Path, entry: Doc) -> Doc:
    if set(entry) - {"path", "patch"}:
        raise ConfigError(f"patch {entry}: only `path` or `patch` (strategic merge, target from the patch) "
                          "is in vidx's kustomize subset")
    docs = _load(root / entry["path"]) if "path" in entry else [yaml.safe_load(entry["patch"])]
    if len(docs) != 1:
        raise ConfigError(f"patch {entry} must hold exactly one document")
    return docs[0]


def _apply_patch(docs: list[Doc], patch: Doc) -> None:
    kind, name = patch.get("kind"), patch.get("metadata", {}).get("name")
    matches = [d for d in docs if d.get("kind") == kind and d["metadata"].get("name") == name]
    if len(matches) != 1:
        raise ConfigError(f"patch for {kind}/{name} matches {len(matches)} resources, needs exactly 1")
    doc = matches[0]
    strategic = str(doc.get("apiVersion", "")).startswith(BUILTIN_GROUPS)
    merged = _merge(doc, patch, strategic=strategic)
    doc.clear()
    doc.update(merged)


def _merge(base: Any, patch: Any, *, strategic: bool, key: str | None = None) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = _merge(out[k], v, strategic=strategic, key=k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if strategic and isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        return _merge_list(base, patch, MERGE_KEYS[key])
    return copy.deepcopy(patch)


def _merge_list(base: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    out = [copy.deepcopy(item) for item in base]
    for item in patch:
        at = next((i for i, old in enumerate(out) if old.get(merge_key) == item.get(merge_key)), None)
        if at is None:
            out.append(copy.deepcopy(item))
        else:
            out[at] = _merge(out[at], item, strategic=True)
    return out


def _set_namespace(docs: list[Doc], namespace: str) -> None:
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = namespace
        if doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for subject in doc.get("subjects", []):
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace


def _add_labels(docs: list[Doc], group: Doc) -> None:
    if group.get("includeSelectors", False):
        raise ConfigError("labels with includeSelectors: true are outside vidx's kustomize subset")
    pairs = {str(k): str(v) for k, v in group["pairs"].items()}
    for doc in docs:
        doc["metadata"].setdefault("labels", {}).update(pairs)
        if group.get("includeTemplates", False) and doc["kind"] in TEMPLATED:
            template = doc.setdefault("spec", {}).setdefault("template", {})
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _set_image(docs: list[Doc], image: Doc) -> None:
    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for field in ("containers", "initContainers"):
                for container in node.get(field, []) if isinstance(node.get(field), list) else []:
                    container["image"] = _new_image(container.get("image", ""), image)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for doc in docs:
        visit(doc)


def _new_image(current: str, image: Doc) -> str:
    name, sep, rest = current.partition("@")
    tag = ""
    if not sep:
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1:]
    if name != image["name"]:
        return current
    new = image.get("newName", name)
    if "digest" in image:
        return f"{new}@{image['digest']}"
    tag = str(image.get("newTag", tag))
    if sep:
        return f"{new}@{rest}" if "newTag" not in image else f"{new}:{tag}"
    return f"{new}:{tag}" if tag else new


def _set_replicas(docs: list[Doc], name: str, count: int) -> None:
    hits = [d for d in docs if d["kind"] in REPLICATED and d["metadata"].get("name") == name]
    if not hits:
        raise ConfigError(f"replicas: no Deployment/StatefulSet/ReplicaSet named {name}")
    for doc in hits:
        doc.setdefault("spec", {})["replicas"] = count
