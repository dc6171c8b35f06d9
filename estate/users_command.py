"""`estate users add|remove|rotate|list`: edit the `mqtt-estate:users` list of a stack file in place.

The file is edited as text, so every byte the command does not mean to change stays as it was: comments, key order,
quoting, blank lines, line endings, a missing final newline. PyYAML composes the file (with the limits of
estate/stackfile.py: size, aliases, depth) to find the users list and its items, and scans it for where each item's
content ends (a block collection's own end mark lies past the comments that follow it); then whole lines are
inserted or removed, in the indentation and style the list already has:

- add: `- name: ...` lines after the last item (after its own trailing comments), or a new `mqtt-estate:users:` key
  at the end of `config:`;
- remove: the item's lines, with its own trailing comment lines (comment lines right below it, indented deeper
  than its `-`); a comment at the `-` column belongs to what follows and stays;
- rotate: `rotation: <n + 1>` replaces the item's rotation value, or `rotation: 1` is added as its last key.

Nothing is written unless the new text passes the validation `render` runs (estate.stackfile.read_stack_file):
the text goes to a temporary file beside the stack file, is read back from there, and replaces the stack file
atomically (os.replace), with its mode. A refusal is one line naming the file and key path, exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..stacks.errors import PROJECT, ConfigIssue, StackConfigError

# The edits themselves (estate/users_edit.py: the stack model, its checks, the reader) are imported when a `users`
# command runs, not when the CLI builds its parser: every command would pay for them.
USERS_KEY = f"{PROJECT}:users"


# --- the command line ---------------------------------------------------------------------------------------------

def add_parser(sub, program_flag) -> None:
    """`users` and its actions, on the CLI's subparsers."""
    users = sub.add_parser("users", help="add, remove, rotate or list the users of a stack file (edits it in place)")
    actions = users.add_subparsers(dest="action", required=True)

    def target(parser):
        parser.add_argument("--stack", help="edit Pulumi.<stack>.yaml of the program")
        parser.add_argument("--config", type=Path, metavar="FILE", help="edit this stack file instead")
        program_flag(parser)
        return parser

    add = target(actions.add_parser("add", help="add a user (its password is generated on the next render)"))
    add.add_argument("name")
    add.add_argument("--role", default="device",
                     help="admin, device, edge-node, host-application, dashboard or service (default device)")
    add.add_argument("--auth", default="password", help="password, certificate or both (default password)")
    add.add_argument("--zone", help="factory zone of a device (broker.acl.factory.zones)")
    add.add_argument("--group", dest="groups", action="append", default=[], metavar="GROUP",
                     help="Sparkplug group of an edge-node or host-application (repeat for several)")
    target(actions.add_parser("remove", help="remove a user")).add_argument("name")
    target(actions.add_parser("rotate", help="issue a new generated password and certificate for a user on the "
                                             "next render / pulumi up")).add_argument("name")
    target(actions.add_parser("list", help="list the users"))


def run(args, find_program) -> int:
    from .users_edit import StackText, unified_diff, users_table

    path, project = _target(args, find_program)
    edit = StackText.read(path, project)
    if args.action == "list":
        print(users_table(edit.stack_file))
        return 0
    if args.action == "add":
        new_text, summary = edit.add(args.name, args.role, args.auth, args.zone, args.groups)
    elif args.action == "remove":
        new_text, summary = edit.remove(args.name)
    else:
        new_text, summary = edit.rotate(args.name)
    stack_file = edit.write(new_text)
    for line in stack_file.warnings:
        print(f"warning: {line}", file=sys.stderr)
    sys.stdout.writelines(unified_diff(edit.text, new_text, path.name))
    print(summary)
    return 0


def _target(args, find_program) -> tuple[Path, Path]:
    """The stack file to edit and the project file it is validated with."""
    if args.stack is None and args.config is None:
        raise StackConfigError("users", [ConfigIssue(None, "give --stack NAME (Pulumi.NAME.yaml) or --config FILE")])
    program = find_program(args)
    if not program.typed:
        raise StackConfigError(str(program.project.path.parent), [ConfigIssue(
            None, f"a program of your own: its stack files' config is its own (`users` edits the {USERS_KEY} list "
                  "of this estate's typed stack files)")])
    return (args.config if args.config is not None else program.stack_file(args.stack)), program.project.path
