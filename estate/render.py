"""`estate render`: run the program offline and write every Kubernetes object, pod file and the resource tree."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import pulumi

from ..stacks.errors import ConfigIssue, StackConfigError, safe_text
from .engine import EngineError, Registry, run_program
from .manifests import kubernetes_objects, object_index, pod_files, workloads, write_manifests
from .output import RENDER_MARKER, check_stack_name, staged_directory, write_file
from .seed import load_or_create
from .stackfile import StackFile, read_program_stack_file, read_stack_file
from .topology import write_topology

if TYPE_CHECKING:
    from .program import Program

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROGRAM = PROJECT_DIR / "__main__.py"


@dataclass
class Render:
    stack: str
    stack_file: StackFile
    registry: Registry
    objects: list[dict]
    out: Path


def evaluate(stack: str, config: Optional[Path] = None, state_dir: Optional[Path] = None,
             program: Optional[Program] = None, control_plane=None) -> tuple[StackFile, Registry]:
    """Read the stack file, then run the program under mocks with real TLS and random values.

    `program`: this checkout's own (default) or one of yours (estate/program.py); `config` replaces its
    Pulumi.<stack>.yaml, `state_dir` the home of its seeds; `control_plane`: an estate.aws_provider.ControlPlane
    to provision AWS resources against and leave running (default: one of the run's own, stopped after it)."""
    from .program import ProgramError, own_program

    check_stack_name(stack, "stack")  # before it names any file: library callers too, not only the CLI

    program = program or own_program()
    path = config if config is not None else program.stack_file(stack)
    stack_file = read_stack_file(path, program.project.path) if program.typed \
        else read_program_stack_file(path, program.project)
    seed = load_or_create((state_dir or program.state_dir) / stack / "seed.json")
    try:
        registry = run_program(program.entry, stack, stack_file.pulumi_config, stack_file.secret_keys, seed,
                               program.name, control_plane)
    except (EngineError, StackConfigError):
        raise
    except pulumi.ConfigMissingError as exc:  # the program requires a key the stack file does not set
        raise StackConfigError(path.name, [ConfigIssue(None, f"{safe_text(exc.key)}: missing (the program requires "
                                                             "it; set it in this file)")]) from exc
    except pulumi.ConfigTypeError as exc:
        raise StackConfigError(path.name, [ConfigIssue(None, f"{safe_text(exc.key)}: {safe_text(exc.value)!r} is not "
                                                             f"a valid {exc.expect_type} (the program reads it as "
                                                             "one)")]) from exc
    except Exception as exc:
        raise ProgramError(program, exc) from exc
    return stack_file, registry


def resource_tree(registry: Registry, stack: str) -> str:
    """The registered resources as `pulumi preview` draws them (children sorted, so output is stable)."""
    root = registry.stack_name(stack)
    children: dict[Optional[str], list] = {}
    for res in registry.resources:
        children.setdefault(res.parent, []).append(res)
    root_urn = next((r.parent for r in registry.resources if r.parent and r.parent.endswith(f"::{root}")), None)
    rows = [("Type", "Name", "    "), ("pulumi:pulumi:Stack", root, " +  ")]

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


def render(stack: str, config: Optional[Path] = None, out: Optional[Path] = None,
           state_dir: Optional[Path] = None, program: Optional[Program] = None, control_plane=None) -> Render:
    stack_file, registry = evaluate(stack, config, state_dir, program, control_plane)
    return write_render(stack, stack_file, registry, out or (program.out_dir(stack) if program else None))


def write_render(stack: str, stack_file: StackFile, registry: Registry, out: Optional[Path] = None) -> Render:
    """Write what the program registered: manifests, pod files, resource tree, public outputs and the topology
    diagram (topology.dot, and .svg/.png when graphviz's `dot` is installed)."""
    objects = kubernetes_objects(registry)
    final = out or Path("out") / stack
    with staged_directory(final) as scratch:
        write_manifests(objects, scratch / "k8s")
        index = object_index(objects)
        for workload in workloads(objects, ("StatefulSet", "Deployment")):
            for mount_path, (content, secret) in sorted(pod_files(index, workload).items()):
                write_file(scratch / "files" / workload["metadata"]["name"] / mount_path.lstrip("/"), content, secret)
        write_file(scratch / RENDER_MARKER, resource_tree(registry, stack))
        write_file(scratch / "outputs.json", json.dumps(registry.public_outputs(), indent=2, sort_keys=True) + "\n")
        write_topology(objects, scratch)
    return Render(stack, stack_file, registry, objects, final.resolve())
