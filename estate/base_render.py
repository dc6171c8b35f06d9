"""The render a change starts from, for `estate diff`: the program as it was at a git ref, or the same program
with the stack file as it was.

A git ref is exported with `git archive` into a scratch directory and evaluated there by its own code (its
components, stacks and engine, in a child process), so a change to the components shows in the diff as much as
a change to the stack file. Both sides use the working tree's seeds, so keys and generated passwords are the same
resources in both, as they are in a real stack's state.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from .engine import Registered, Registry

SNAPSHOT = """
import json, sys
from pathlib import Path
from mqtt_estate.estate.render import evaluate
stack, config, state_dir = sys.argv[1], sys.argv[2], sys.argv[3]
stack_file, registry = evaluate(stack, Path(config) if config else None, state_dir=Path(state_dir))
json.dump({"project": registry.project, "pulumi_config": stack_file.pulumi_config,
           "resources": [{"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent, "custom": r.custom,
                          "inputs": r.inputs, "secret": r.secret} for r in registry.resources]}, sys.stdout)
"""
"""Run in the base checkout: its own `evaluate` (every version of the engine has it), printed as JSON on stdout
(a pipe: the secret inputs never touch the disk)."""


class BaseRenderError(RuntimeError):
    """The base could not be rendered: one line saying why."""


def registry_from_snapshot(snapshot: dict) -> Registry:
    resources = [Registered(urn=r["urn"], type=r["type"], name=r["name"], parent=r["parent"], custom=r["custom"],
                            inputs=r["inputs"], outputs={}, secret=r["secret"]) for r in snapshot["resources"]]
    return Registry(resources=resources, project=snapshot["project"])


def _git(root: Path, *args: str) -> bytes:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True)
    if result.returncode != 0:
        raise BaseRenderError(result.stderr.decode(errors="replace").strip().splitlines()[-1]
                              if result.stderr.strip() else f"git {' '.join(args)} failed")
    return result.stdout


def repository_root(directory: Path) -> Path:
    return Path(_git(directory, "rev-parse", "--show-toplevel").decode().strip())


def export_ref(root: Path, ref: str, into: Path) -> None:
    """The tree of `ref` (a commit, branch or tag) written into `into`; nothing outside it is ever written."""
    _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    archive = _git(root, "archive", "--format=tar", ref)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def render_at_ref(project_dir: Path, ref: str, stack: str, config: Optional[Path], state_dir: Path) -> tuple[Registry, dict]:
    """(registry, pulumi config) of the program in `project_dir` as it was at `ref`.

    `config`: the stack file after the change; when it lies inside the repository, its version at `ref` is
    used, else the base's own Pulumi.<stack>.yaml."""
    root = repository_root(project_dir)
    relative_project = project_dir.resolve().relative_to(root)
    with tempfile.TemporaryDirectory(prefix="estate-diff-base-") as scratch:
        base = Path(scratch)
        export_ref(root, ref, base)
        base_project = base / relative_project
        base_config = ""
        if config is not None:
            try:
                inside = config.resolve().relative_to(root)
            except ValueError:
                inside = None
            if inside is not None and (base / inside).is_file():
                base_config = str(base / inside)
        if not (base_project / "Pulumi.yaml").is_file():
            raise BaseRenderError(f"{ref} has no Pulumi.yaml in {relative_project or '.'}")
        env = {**os.environ, "PYTHONPATH": str(base)}
        result = subprocess.run([sys.executable, "-c", SNAPSHOT, stack, base_config, str(state_dir)],
                                cwd=base_project, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            raise BaseRenderError(f"the program at {ref} did not render: {lines[-1] if lines else 'no output'}")
        snapshot = json.loads(result.stdout)
    return registry_from_snapshot(snapshot), snapshot["pulumi_config"]
