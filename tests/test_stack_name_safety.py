"""A stack name is checked before it becomes a path, a render never replaces what is not a render, and two
programs run in one process do not share their own modules.

`--stack ..` used to render into the project directory itself, replacing it whole (Pulumi.yaml, the program and its
seeds gone); `--stack ../x` wrote outside it; a symbolic link given as the output directory had its target replaced.
The CLI cases run `python -m estate` in a subprocess inside a copy of examples/edge-site, as a user runs it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mqtt_estate.estate.output import (STACK_NAME_RULE, check_replaceable, stack_name_problem, staged_directory,
                                       write_file)
from mqtt_estate.estate.program import load_program
from mqtt_estate.estate.render import evaluate
from mqtt_estate.stacks.errors import StackConfigError
from tests.test_engine_robustness import TRACEBACK
from tests.test_program_option import STACK, copy_example, estate, write

CONFIG = f"Pulumi.{STACK}.yaml"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (not following links): its kind, mode and bytes or link target."""
    found = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif path.is_dir():
            found[str(path.relative_to(root))] = ("dir", stat.st_mode)
        else:
            found[str(path.relative_to(root))] = ("file", stat.st_mode, path.read_bytes())
    return found


# ------------------------------------------------------------------------------------------------ stack names

INVALID = {
    "..": "it names a directory here",
    ".": "it names a directory here",
    "../x": "'/' at position 2",
    "../../../escape": "'/' at position 2",
    "a/b": "'/' at position 1",
    "organization/edge-site/edge": "'/' at position 12",
    "": "it is empty",
    "x" * 101: "101 characters, at most 100",
    "dev prod": "' ' at position 3",
    "dev\nerror: forged": "'\\n' at position 3",
}
VALID = ["dev", "prod.eu-1", "-x", "x" * 100, "A_b.9", ".hidden", "..."]
"""Pulumi's rule (sdk/go/common/tokens/stack_name.go:51-85) takes all of these; `-x` too."""


@pytest.mark.parametrize("name", list(INVALID), ids=lambda n: repr(n)[:20])
def test_invalid_stack_names_are_refused(name):
    assert stack_name_problem(name) == INVALID[name]


@pytest.mark.parametrize("name", VALID, ids=lambda n: n[:20])
def test_valid_stack_names_pass(name):
    assert stack_name_problem(name) is None


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "", "x" * 101, "dev\nerror: forged"],
                         ids=["dotdot", "dotdot-x", "a-b", "empty", "101-chars", "newline"])
def test_cli_refuses_a_bad_stack_name_in_one_line_before_anything(name, tmp_path):
    project = copy_example(tmp_path)
    before = snapshot(tmp_path)
    proc = estate("render", "--stack", name, "--config", CONFIG, cwd=project)
    shown = repr(name) if len(name) <= 60 else repr(name[:57]) + "..."
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines() == [f"--stack: {shown} is not a stack name ({INVALID[name]}; {STACK_NAME_RULE})"]
    assert TRACEBACK not in proc.stderr
    assert snapshot(tmp_path) == before  # nothing read into a seed, nothing written


@pytest.mark.parametrize("command", [["policy"], ["up", "--local"]])
def test_every_command_with_a_stack_checks_it(command, tmp_path):
    project = copy_example(tmp_path)
    before = snapshot(tmp_path)
    proc = estate(*command, "--stack", "..", "--config", CONFIG, cwd=project)
    assert proc.returncode == 2 and proc.stderr.startswith("--stack: '..' is not a stack name ("), proc.stderr
    assert snapshot(tmp_path) == before


def test_project_survives_stack_dotdot_byte_for_byte(tmp_path):
    """The reviewer's case: inside the project, after a first render (seeds and out/ exist)."""
    project = copy_example(tmp_path)
    first = estate("render", "--stack", STACK, cwd=project)
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path)
    for name in ("..", "../../../escape", "."):
        proc = estate("render", "--stack", name, "--config", CONFIG, cwd=project)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert snapshot(tmp_path) == before
    assert not (tmp_path.parent / "escape").exists() and not (project.parent.parent / "escape").exists()


def test_valid_names_render_and_re_render_into_out_stack(tmp_path):
    project = copy_example(tmp_path)
    for _ in range(2):  # the second render replaces the first
        proc = estate("render", "--stack=prod.eu-1", "--config", CONFIG, cwd=project)
        assert proc.returncode == 0, proc.stderr
    out = project / "out" / "prod.eu-1"
    assert proc.stdout.endswith(f"Kubernetes objects to {out}\n")
    assert sorted(p.name for p in out.iterdir()) == ["files", "k8s", "outputs.json", "resources.txt", "topology.dot", "topology.png", "topology.svg"]
    assert (project / ".estate" / "prod.eu-1" / "seed.json").is_file()
    assert [p.name for p in (project / "out").iterdir()] == ["prod.eu-1"]  # no scratch or old render left
    dashed = estate("render", "--stack=-x", "--config", CONFIG, "--out", str(tmp_path / "dashed"), cwd=project)
    assert dashed.returncode == 0, dashed.stderr  # Pulumi takes `-x`; `--stack=-x` passes it


# ------------------------------------------------------------------------------------------------ the output directory

def _precious(directory: Path) -> Path:
    write(directory, "thesis.tex", "years of work\n")
    write(directory / "chapters", "one.tex", "chapter one\n")
    return directory


def test_cli_refuses_a_symlinked_out_and_leaves_its_target(tmp_path):
    project = copy_example(tmp_path)
    precious = _precious(tmp_path / "precious")
    (project / "out").mkdir()
    (project / "out" / STACK).symlink_to(precious)
    before = snapshot(tmp_path)
    for args in ([], ["--out", str(project / "out" / STACK)]):
        proc = estate("render", "--stack", STACK, *args, cwd=project)
        shown = f"--out {project / 'out' / STACK}" if args else str(project.resolve() / "out" / STACK)
        assert (proc.returncode, proc.stderr.splitlines()) == \
            (2, [f"{shown}: is a symbolic link; refusing to replace it or what it points to"])
    assert snapshot(tmp_path) == before


def test_cli_refuses_a_non_render_directory_as_out(tmp_path):
    project = copy_example(tmp_path)
    precious = _precious(tmp_path / "precious")
    before = snapshot(tmp_path)
    proc = estate("render", "--stack", STACK, "--out", str(precious), cwd=project)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines() == [f"--out {precious}: exists and is not a render (no resources.txt of one); "
                                        "refusing to replace it"]
    assert snapshot(tmp_path) == before  # not even a seed: refused before the program ran


def test_cli_refuses_the_project_itself_as_out(tmp_path):
    project = copy_example(tmp_path)
    before = snapshot(tmp_path)
    proc = estate("render", "--stack", STACK, "--out", ".", cwd=project)
    assert proc.returncode == 2 and proc.stderr.endswith("refusing to replace it\n"), proc.stderr
    assert snapshot(tmp_path) == before


def _fake_render(directory: Path) -> Path:
    write(directory, "resources.txt", "     Type    Name\n +   pulumi:pulumi:Stack    p-s\n")
    write(directory / "k8s", "a.yaml", "kind: ConfigMap\n")
    return directory


def _stage(final: Path, text: str = "new\n") -> None:
    with staged_directory(final) as scratch:
        write_file(scratch / "resources.txt", "     Type    Name\n")
        write_file(scratch / "marker", text)


def test_staged_directory_replaces_an_earlier_render_or_an_empty_directory(tmp_path):
    earlier = _fake_render(tmp_path / "out" / "s")
    _stage(earlier)
    assert sorted(p.name for p in earlier.iterdir()) == ["marker", "resources.txt"]
    (tmp_path / "empty").mkdir()
    _stage(tmp_path / "empty")
    _stage(tmp_path / "absent" / "deeper")
    assert (tmp_path / "empty" / "marker").is_file() and (tmp_path / "absent" / "deeper" / "marker").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s"]  # no scratch, no old render left


def test_a_linked_parent_is_followed(tmp_path):
    """`out -> /other/disk` is how renders are kept elsewhere: only a link at the render's own path is refused."""
    (tmp_path / "disk").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "disk")
    _stage(tmp_path / "out" / "s")
    _stage(tmp_path / "out" / "s")
    assert (tmp_path / "disk" / "s" / "marker").is_file() and (tmp_path / "out").is_symlink()
    assert [p.name for p in (tmp_path / "disk").iterdir()] == ["s"]


@pytest.mark.parametrize("case", ["link-to-render", "link-to-precious", "dangling-link", "precious", "file",
                                  "marker-not-a-render", "marker-is-a-link"])
def test_staged_directory_refuses_what_is_not_a_render(case, tmp_path):
    """Defence in depth, whatever called it: nothing is written over what it refuses."""
    final = tmp_path / "out" / "s"
    final.parent.mkdir()
    if case == "link-to-render":
        final.symlink_to(_fake_render(tmp_path / "elsewhere"))
    elif case == "link-to-precious":
        final.symlink_to(_precious(tmp_path / "precious"))
    elif case == "dangling-link":
        final.symlink_to(tmp_path / "nowhere")
    elif case == "precious":
        _precious(final)
    elif case == "file":
        final.write_text("notes\n")
    elif case == "marker-not-a-render":
        _precious(final)
        write(final, "resources.txt", "my list of resources\n")
    else:
        _precious(final)
        (final / "resources.txt").symlink_to(_fake_render(tmp_path / "elsewhere") / "resources.txt")
    before = snapshot(tmp_path)
    with pytest.raises(StackConfigError) as refused:
        _stage(final)
    assert refused.value.lines[0].startswith(f"{final}: ")
    assert snapshot(tmp_path) == before
    with pytest.raises(StackConfigError):
        check_replaceable(final, "--out")


def test_staged_directory_refuses_what_appeared_while_it_wrote(tmp_path):
    final = tmp_path / "s"
    with pytest.raises(StackConfigError):
        with staged_directory(final) as scratch:
            write_file(scratch / "resources.txt", "     Type    Name\n")
            _precious(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert (final / "thesis.tex").read_text() == "years of work\n"


# ------------------------------------------------------------------------------------------------ two programs

def _helpers_program(root: Path, name: str) -> Path:
    directory = root / name
    write(directory, "Pulumi.yaml", f"name: {name}\nruntime: python\n")
    write(directory, "Pulumi.dev.yaml", "config: {}\n")
    write(directory, "helpers.py", f"NS = 'ns-{name}'\n")
    write(directory / "lib", "__init__.py", "")
    write(directory / "lib", "names.py", f"SITE = 'site-{name}'\n")
    write(directory, "__main__.py", "import pulumi\nimport helpers\nfrom lib import names\n"
                                    "pulumi.export('ns', helpers.NS)\npulumi.export('site', names.SITE)\n")
    return directory


def test_two_programs_in_one_process_each_get_their_own_modules(tmp_path):
    outputs = []
    for name in ("a", "b", "a"):
        program = load_program(_helpers_program(tmp_path, name))
        _, registry = evaluate("dev", program=program, state_dir=tmp_path / "state")
        outputs.append((registry.stack_outputs["ns"], registry.stack_outputs["site"]))
        assert not {"helpers", "lib", "lib.names"} & set(sys.modules)
    assert outputs == [("ns-a", "site-a"), ("ns-b", "site-b"), ("ns-a", "site-a")]


def test_the_packages_own_and_site_packages_modules_stay(tmp_path):
    """A virtualenv inside the project (venv/lib/.../site-packages, as `pulumi new` makes one) is not the
    program's own: what it loaded stays, as do this package's modules."""
    directory = _helpers_program(tmp_path, "c")
    site = directory / "venv" / "lib" / "site-packages"
    write(site, "estate_probe_vendored.py", "VALUE = 1\n")
    write(directory, "__main__.py", f"import sys\nsys.path.append({str(site)!r})\nimport pulumi\nimport helpers\n"
                                    "import estate_probe_vendored\nimport mqtt_estate.components.names\n"
                                    "pulumi.export('ns', helpers.NS)\n")
    try:
        _, registry = evaluate("dev", program=load_program(directory), state_dir=tmp_path / "state")
        assert registry.stack_outputs["ns"] == "ns-c"
        assert "estate_probe_vendored" in sys.modules and "helpers" not in sys.modules
        assert "mqtt_estate.components.names" in sys.modules
    finally:
        sys.modules.pop("estate_probe_vendored", None)
        if str(site) in sys.path:
            sys.path.remove(str(site))
