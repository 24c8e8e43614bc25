"""What ``kustomize build`` makes of deploy/k8s, for the tests (no kubectl here).

Only the features deploy/k8s uses: resources, namespace, images and strategic-merge patches by
path. Anything else in a kustomization fails loudly rather than being rendered wrongly.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

#: Strategic-merge keys of the lists that deploy/k8s patches (as Kubernetes defines them).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}


def kustomize_build(directory: Path) -> list[dict]:
    """The objects of the kustomization in ``directory``, rendered."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - KUSTOMIZATION_KEYS
    assert not unsupported, f"{directory}: the test renderer does not know {unsupported}"
    docs: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs += kustomize_build(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for entry in kustomization.get("patches", []):
        assert set(entry) == {"path"}, f"only strategic-merge patches by path: {entry}"
        patch = yaml.safe_load((directory / entry["path"]).read_text())
        matches = [
            i
            for i, doc in enumerate(docs)
            if doc["kind"] == patch["kind"]
            and doc["metadata"]["name"] == patch["metadata"]["name"]
            and doc["apiVersion"] == patch["apiVersion"]
        ]
        assert len(matches) == 1, f"{entry['path']}: {len(matches)} targets"
        docs[matches[0]] = strategic_merge(docs[matches[0]], patch)
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in pod_spec(doc).get("containers", []) + pod_spec(doc).get("initContainers", []):
                name = re.split(r"[:@]", container["image"], maxsplit=1)[0]
                if name == image["name"]:
                    container["image"] = image.get("newName", name) + (
                        f":{image['newTag']}" if "newTag" in image else container["image"][len(name) :]
                    )
    return docs


def strategic_merge(target, patch, key: str | None = None):
    if isinstance(target, dict) and isinstance(patch, dict):
        assert not any(k.startswith("$") for k in patch), f"patch directive not supported here: {patch}"
        out = dict(target)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(target, list) and isinstance(patch, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        out, added = [copy.deepcopy(item) for item in target], []
        for item in patch:
            index = next((i for i, old in enumerate(out) if old.get(merge_key) == item.get(merge_key)), None)
            if index is None:
                added.append(copy.deepcopy(item))
            else:
                out[index] = strategic_merge(out[index], item)
        return added + out  # kustomize puts the patch's new items first
    return copy.deepcopy(patch)


def pod_spec(doc: dict) -> dict:
    return (
        doc.get("spec", {}).get("template", {}).get("spec", {})
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
        else {}
    )


def by_kind(docs: list[dict]) -> dict[str, dict]:
    """The rendered objects by kind; each kind at most once."""
    out = {}
    for doc in docs:
        assert doc["kind"] not in out, f"two {doc['kind']} objects"
        out[doc["kind"]] = doc
    return out


def normalise(docs: list[dict]) -> dict:
    """Objects by (kind, namespace, name): two renderings compare regardless of order."""
    return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
