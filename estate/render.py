"""`estate render`: run the program offline and write every Kubernetes object, pod file and the resource tree."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from estate.engine import Registry, run_program
from estate.manifests import kubernetes_objects, object_index, pod_files, workloads, write_manifests
from estate.output import staged_directory, write_file
from estate.seed import load_or_create
from estate.stackfile import StackFile, read_stack_file

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROGRAM = PROJECT_DIR / "__main__.py"


@dataclass
class Render:
    stack: str
    stack_file: StackFile
    registry: Registry
    objects: list[dict]
    out: Path


def stack_file_path(stack: str, config: Optional[Path]) -> Path:
    return config if config is not None else PROJECT_DIR / f"Pulumi.{stack}.yaml"


def evaluate(stack: str, config: Optional[Path] = None, state_dir: Optional[Path] = None) -> tuple[StackFile, Registry]:
    """Validate the stack file, then run the program under mocks with real TLS and random values."""
    stack_file = read_stack_file(stack_file_path(stack, config))
    seed = load_or_create((state_dir or PROJECT_DIR / ".estate") / stack / "seed.json")
    registry = run_program(PROGRAM, stack, stack_file.pulumi_config, stack_file.secret_keys, seed)
    return stack_file, registry


def resource_tree(registry: Registry, stack: str, project: str = "mqtt-estate") -> str:
    """The registered resources as `pulumi preview` draws them (children sorted, so output is stable)."""
    children: dict[Optional[str], list] = {}
    for res in registry.resources:
        children.setdefault(res.parent, []).append(res)
    root_urn = next((r.parent for r in registry.resources if r.parent and r.parent.endswith(f"::{project}-{stack}")), None)
    rows = [("Type", "Name", "    "), ("pulumi:pulumi:Stack", f"{project}-{stack}", " +  ")]

    def walk(parent, prefix):
        kids = sorted(children.get(parent, []), key=lambda r: (r.custom, r.type, r.name))
        for i, res in enumerate(kids):
            last = i == len(kids) - 1
            rows.append((prefix + ("└─ " if last else "├─ ") + res.type, res.name, " +  "))
            walk(res.urn, prefix + ("   " if last else "│  "))

    walk(root_urn, "")
    width = max(len(label) for label, _, _ in rows) + 2
    lines = [f"{mark} {label:<{width}}{name}" for label, name, mark in rows]
    lines.append(f"\nResources:\n    + {len(registry.resources) + 1} to create")
    return "\n".join(lines) + "\n"


def public_outputs(registry: Registry) -> dict:
    return {k: ("[secret]" if k in registry.secret_outputs else v) for k, v in sorted(registry.stack_outputs.items())}


def render(stack: str, config: Optional[Path] = None, out: Optional[Path] = None,
           state_dir: Optional[Path] = None) -> Render:
    stack_file, registry = evaluate(stack, config, state_dir)
    return write_render(stack, stack_file, registry, out)


def write_render(stack: str, stack_file: StackFile, registry: Registry, out: Optional[Path] = None) -> Render:
    """Write what the program registered: manifests, pod files, resource tree and public outputs."""
    objects = kubernetes_objects(registry)
    final = out or Path("out") / stack
    with staged_directory(final) as scratch:
        write_manifests(objects, scratch / "k8s")
        index = object_index(objects)
        for workload in workloads(objects, ("StatefulSet", "Deployment")):
            for mount_path, (content, secret) in sorted(pod_files(index, workload).items()):
                write_file(scratch / "files" / workload["metadata"]["name"] / mount_path.lstrip("/"), content, secret)
        write_file(scratch / "resources.txt", resource_tree(registry, stack))
        write_file(scratch / "outputs.json", json.dumps(public_outputs(registry), indent=2, sort_keys=True) + "\n")
    return Render(stack, stack_file, registry, objects, final.resolve())
