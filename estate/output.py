"""Writing rendered files: secrets 0600, everything into a fresh directory that replaces the old one at once.

A stack's name becomes a directory name (out/<stack>, .estate/<stack>/seed.json), so it is checked first
(check_stack_name); and the directory a render replaces must be an earlier render (check_replaceable), never a
symbolic link, a file or a directory of something else."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from ..stacks.errors import ConfigIssue, StackConfigError

STACK_NAME_CHARACTER = re.compile(r"[A-Za-z0-9_.-]")
# Pulumi's rule for a stack name: pulumi/pulumi sdk/go/common/tokens/stack_name.go:51-85 (ParseStackName: not empty,
# at most 100 characters, `^[A-Za-z0-9_.-]*` to the end: "a stack name may only contain alphanumeric, hyphens,
# underscores, or periods"). The backends also take `<org>/<stack>` and `<org>/<project>/<stack>`
# (pkg/backend/diy/store.go:138-199, pkg/backend/httpstate/backend.go:1159-1181) and keep the stack part alone;
# offline there is no organization and the project is Pulumi.yaml's, so only the plain name is taken. `.` and `..`
# pass Pulumi's rule (its backends store `<stack>.json`) but here the name is a directory: refused too.
STACK_NAME_RULE = ("a stack name is 1 to 100 letters, digits, hyphens, underscores or periods, as Pulumi allows, "
                   "but not '.' or '..', and offline the plain stack name only, not organization/project/stack")

RENDER_MARKER = "resources.txt"
"""The resource tree every render writes (render.write_render), first line its header: a directory with it is an
earlier render."""


def stack_name_problem(stack: str) -> Optional[str]:
    """Why `stack` cannot be a stack name here (None: it can)."""
    if not stack:
        return "it is empty"
    if len(stack) > 100:
        return f"{len(stack)} characters, at most 100"
    bad = next((i for i, ch in enumerate(stack) if not STACK_NAME_CHARACTER.fullmatch(ch)), None)
    if bad is not None:
        return f"{stack[bad]!r} at position {bad}"
    if stack in (".", ".."):
        return "it names a directory here"
    return None


def check_stack_name(stack: str, source: str = "--stack") -> None:
    """Refuse (StackConfigError: exit 2) a name that is not a stack name, before it becomes any path."""
    problem = stack_name_problem(stack)
    if problem is not None:
        shown = repr(stack) if len(stack) <= 60 else repr(stack[:57]) + "..."  # one line, whatever it holds
        raise StackConfigError(source, [ConfigIssue(None, f"{shown} is not a stack name ({problem}; "
                                                          f"{STACK_NAME_RULE})")])


def _is_render(directory: Path) -> bool:
    marker = directory / RENDER_MARKER
    if marker.is_symlink() or not marker.is_file():
        return False
    with marker.open("rb") as handle:
        first = handle.readline(200)
    return first.split() == [b"Type", b"Name"]


def replace_problem(final: Path) -> Optional[str]:
    """Why a render must not replace `final` (None: it may: absent, empty, or an earlier render)."""
    if final.is_symlink():
        return "is a symbolic link; refusing to replace it or what it points to"
    if not final.exists():
        return None
    if not final.is_dir():
        return "exists and is not a directory; refusing to replace it"
    if next(final.iterdir(), None) is None or _is_render(final):
        return None
    return f"exists and is not a render (no {RENDER_MARKER} of one); refusing to replace it"


def check_replaceable(final: Path, source: Optional[str] = None) -> None:
    """Refuse (StackConfigError: exit 2) to write a render over `final` unless replace_problem allows it."""
    problem = replace_problem(final)
    if problem is not None:
        raise StackConfigError(f"{source} {final}" if source else str(final), [ConfigIssue(None, problem)])


def write_file(path: Path, text: str, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600 if secret else 0o644)


def _final_path(final: Path) -> Path:
    """`final` made absolute without following `final` itself when it is a symbolic link (its parents are)."""
    if final.name in ("", ".", ".."):
        return final.resolve()
    return final.parent.resolve() / final.name


@contextmanager
def staged_directory(final: Path):
    """Yield a scratch directory; on success it replaces `final`, on failure it vanishes (nothing half-written).

    `final` must be absent, empty or an earlier render (check_replaceable), checked before and again just before
    the swap; the old render is moved into a fresh private directory and deleted from there."""
    final = _final_path(final)
    check_replaceable(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield scratch
        check_replaceable(final)  # again, just before the swap
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    holder = Path(tempfile.mkdtemp(prefix=f".{final.name}-old-", dir=final.parent))
    old = holder / "old"
    try:
        if final.exists():
            final.rename(old)
        scratch.rename(final)
    except BaseException:
        if old.exists() and not final.exists():
            old.rename(final)  # put the earlier render back
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(holder, ignore_errors=True)
        raise
    shutil.rmtree(holder, ignore_errors=True)
