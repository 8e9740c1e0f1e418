"""Writes kuberay-v1.schema.json, the JSON Schema that tests/cli/test_recipes.py checks the
KubeRay manifests against, from KubeRay's RayJob CRD (its rayClusterSpec is RayCluster's spec):

    python tests/cli/data/make_kuberay_schema.py ray.io_rayjobs.yaml SOURCE \\
        > tests/cli/data/kuberay-v1.schema.json

ray.io_rayjobs.yaml is ray-operator/config/crd/bases/ray.io_rayjobs.yaml of ray-project/kuberay;
SOURCE says which (e.g. "ray-project/kuberay@<commit>"). The v1 schema is kept as it is but for
three changes: descriptions are dropped, an object that lists its fields refuses others (as
`kubectl apply` does: strict field validation), and subtrees that repeat (the pod template of
every group) are written once under $defs, RayCluster's spec as $defs/RayClusterSpec."""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import yaml


def _strip(node):
    if isinstance(node, dict):
        node = {k: _strip(v) for k, v in node.items() if k != "description"}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _key(node) -> str:
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


def _replace(node, key: str, ref: dict):
    if isinstance(node, dict):
        if _key(node) == key:
            return ref
        return {k: _replace(v, key, ref) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, key, ref) for v in node]
    return node


def _count(node, counts: collections.Counter, nodes: dict) -> None:
    """Counts every object subtree of ``node`` (by its JSON text), $refs aside."""
    if isinstance(node, dict):
        if "$ref" not in node:
            key = _key(node)
            counts[key] += 1
            nodes[key] = node
        for value in node.values():
            _count(value, counts, nodes)
    elif isinstance(node, list):
        for value in node:
            _count(value, counts, nodes)


def _dedupe(root: dict, defs: dict, min_chars: int = 400) -> dict:
    """Moves the subtree that repeats most (by characters saved) into defs, until none do."""
    while True:
        counts: collections.Counter[str] = collections.Counter()
        nodes: dict[str, dict] = {}
        for node in (root, *defs.values()):
            _count(node, counts, nodes)
        repeated = [
            (len(k) * (n - 1), k) for k, n in counts.items() if n > 1 and len(k) >= min_chars
        ]
        if not repeated:
            return root
        _, key = max(repeated)
        name = f"s{len(defs)}"
        ref = {"$ref": f"#/$defs/{name}"}
        root = _replace(root, key, ref)
        for other in list(defs):
            defs[other] = _replace(defs[other], key, ref)
        defs[name] = nodes[key]


def main(crd_path: str, source: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strip(version["schema"]["openAPIV3Schema"])
    spec = schema["properties"]["spec"]["properties"]
    defs = {"RayClusterSpec": spec["rayClusterSpec"]}
    spec["rayClusterSpec"] = {"$ref": "#/$defs/RayClusterSpec"}
    schema = _dedupe(schema, defs)
    out = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"RayJob v1 from {source}, made by make_kuberay_schema.py",
        **schema,
        "$defs": defs,
    }
    json.dump(out, sys.stdout, sort_keys=True, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
