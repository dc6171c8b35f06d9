"""Which Pulumi program the offline engine runs, and where it reads and writes.

`--program DIR` names a Pulumi project directory (Pulumi.yaml and its stack files). Without it, the nearest
Pulumi.yaml from the current directory upwards, as the pulumi CLI finds its project (pulumi/pulumi
sdk/go/common/workspace/paths.go:101-128, DetectProjectPathFrom), so `mqtt-estate render --stack edge` run inside
your project renders your project. Where there is none, this checkout's own program (the typed stack
configuration at the repository root), which is what `python -m estate` has always run.

A program's files: its stack files beside Pulumi.yaml (or in its `stackConfigDir`), its seeds in
DIR/.estate/<stack>/, and by default its render in DIR/out/<stack> and its local estate in DIR/.estate/local/. This
checkout's own program run from a directory without a Pulumi.yaml keeps its seeds in the checkout and writes
out/<stack> and .estate/local/ in the current directory, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi

from ..components.arguments import ComponentArgumentsError
from ..stacks.errors import PROJECT, ConfigIssue, StackConfigError
from .engine import EngineError, one_line
from .stackfile import ProjectFile, read_project_file

PROJECT_FILES = ("Pulumi.yaml", "Pulumi.yml")
LOCAL_DIR = Path(".estate") / "local"


@dataclass(frozen=True)
class Program:
    name: str
    """The project name: the Stack resource is `<name>-<stack>` and every URN carries it."""
    entry: Path
    """The file run as `__main__` (its directory is the working directory and first on sys.path)."""
    project: ProjectFile
    stack_dir: Path
    state_dir: Path
    """Seeds: <state_dir>/<stack>/seed.json."""
    work_dir: Optional[Path]
    """Default home of out/<stack> and .estate/local/ (None: the current directory)."""
    typed: bool = False
    """Whether its stack files are this estate's typed configuration, validated before the program runs: only this
    checkout's own program (a project of yours that happens to be named mqtt-estate has config of its own)."""

    def stack_file(self, stack: str) -> Path:
        # named like the project file (pulumi/pulumi sdk/go/common/workspace/paths.go:85-93, ProjectStackPath)
        return self.stack_dir / f"Pulumi.{stack}{self.project.path.suffix}"

    def out_dir(self, stack: str) -> Path:
        return (self.work_dir or Path()) / "out" / stack

    @property
    def local_dir(self) -> Path:
        return (self.work_dir or Path.cwd()) / LOCAL_DIR


class ProgramError(EngineError):
    """The program itself raised: one line naming its file and the error (ESTATE_DEBUG=1: the traceback)."""

    def __init__(self, program: Program, exc: BaseException):
        where = _shown_path(program.entry)
        if isinstance(exc, ComponentArgumentsError):  # one line per problem, as the components word them
            super().__init__([f"{where}: {line}" for line in str(exc).splitlines()], exc)
            return
        # a pulumi.RunError is meant for the program's user: Pulumi prints it without its type
        what = one_line(exc) if isinstance(exc, pulumi.RunError) else f"{type(exc).__name__}: {one_line(exc)}"
        super().__init__([f"{where}: {what}"], exc)


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def own_program(work_dir: Optional[Path] = None) -> Program:
    """This checkout's program (render.PROGRAM at the repository root: read when called, so a test may point it
    elsewhere)."""
    from . import render, stackfile

    project = read_project_file(stackfile.PROJECT_FILE) if stackfile.PROJECT_FILE.is_file() \
        else ProjectFile(stackfile.PROJECT_FILE, PROJECT)
    return Program(PROJECT, render.PROGRAM, project, render.PROJECT_DIR, render.PROJECT_DIR / ".estate", work_dir,
                   typed=True)


def _project_file(directory: Path) -> Optional[Path]:
    return next((directory / name for name in PROJECT_FILES if (directory / name).is_file()), None)


def _refused(directory: Path, problem: str) -> StackConfigError:
    return StackConfigError(str(directory), [ConfigIssue(None, problem)])


def load_program(directory: Path) -> Program:
    """The program in `directory` (a Pulumi project: Pulumi.yaml, a Python runtime, its `main`)."""
    if not directory.exists():
        raise _refused(directory, "no such directory (--program names a Pulumi project directory, with Pulumi.yaml)")
    if not directory.is_dir():
        raise _refused(directory, "not a directory (--program names a Pulumi project directory, with Pulumi.yaml)")
    root = directory.resolve()
    found = _project_file(root)
    if found is None:
        raise _refused(directory, "no Pulumi.yaml here (--program names a Pulumi project directory)")
    from . import render

    if root == render.PROJECT_DIR.resolve():
        return own_program(root)
    project = read_project_file(found, _shown_path(found))
    # `main`: a directory (its __main__.py) or a file, relative to the project (pulumi/pulumi
    # pkg/engine/project.go:45-74, getPwdMain; the Python host runs it with runpy.run_path)
    main = root / project.main if project.main else root
    entry = main / "__main__.py" if main.is_dir() else main
    if not entry.is_file():
        where = f"main: {project.main}: " if project.main else ""
        raise StackConfigError(_shown_path(found), [ConfigIssue(None, f"{where}no Python program here "
                                                                      f"({_shown_path(entry)} not found)")])
    stack_dir = root / project.stack_config_dir if project.stack_config_dir else root
    return Program(project.name, entry, project, stack_dir, root / ".estate", root)


def find_program(directory: Optional[Path]) -> Program:
    """`--program DIR`, else the project around the current directory, else this checkout's own program."""
    if directory is not None:
        return load_program(directory)
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if _project_file(candidate) is not None:
            return load_program(candidate)
    program = own_program()
    if not (program.entry.is_file() and program.project.path.is_file()):
        # an installed package: no program of its own is shipped, only the components (its __main__.py is the CLI)
        raise _refused(here, "no Pulumi.yaml here or in any directory above (run inside your Pulumi project, or "
                             "pass --program DIR)")
    return program
