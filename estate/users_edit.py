"""The text edits behind `estate users` (estate/users_command.py says how and why): find the users list and its
items in a stack file's text, build the new text, validate it as render does and put it in place atomically."""

from __future__ import annotations

import bisect
import difflib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml
from pydantic import ValidationError

from ..components.names import internal_users
from ..stacks.checks import warnings
from ..stacks.errors import PROJECT, ConfigIssue, StackConfigError, describe_pydantic_error, safe_text
from ..stacks.model import SECRET_KEY_PREFIX, User
from .stackfile import MAX_FILE_BYTES, StackFile, _UniqueKeyLoader, read_stack_file

USERS = "users"
USERS_KEY = f"{PROJECT}:{USERS}"
BREAKS = ("\r\n", "\n", "\r")
UNICODE_BREAKS = re.compile("[\x85\u2028\u2029]")
"""Line breaks to YAML 1.1 (PyYAML) but not to a line-based edit: a file with one is refused, not misread."""


def unified_diff(old: str, new: str, name: str) -> list[str]:
    """What changed, as `diff -u` shows it (line endings as \\n)."""
    lines = difflib.unified_diff(_lines(old), _lines(new), f"a/{name}", f"b/{name}", n=1, lineterm="")
    return [line + "\n" for line in lines]


def _lines(text: str) -> list[str]:
    return [line.rstrip("\r\n") for line in text.splitlines(keepends=True)]


def users_table(stack_file: StackFile) -> str:
    estate = stack_file.estate
    supplied = {key.split(":", 1)[1][len(SECRET_KEY_PREFIX):] for key in stack_file.secret_keys
                if key.split(":", 1)[1].startswith(SECRET_KEY_PREFIX)}
    rows = [("NAME", "ROLE", "AUTH", "ZONE/GROUPS", "ROTATION", "PASSWORD")]
    for user in estate.users:
        password = "-" if user.auth == "certificate" else "supplied" if user.name in supplied else "generated"
        rows.append((user.name, user.role, user.auth, user.zone or ",".join(user.groups) or "-", str(user.rotation),
                     password))
    if len(rows) == 1:
        return f"{stack_file.path.name}: no users ({USERS_KEY} is empty)"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


# --- the text ------------------------------------------------------------------------------------------------------

@dataclass
class Item:
    node: yaml.MappingNode
    dash: int
    """Index of its `-`."""
    start: int
    """Start of the line of its `-`."""
    content_end: int
    """End (after the line break) of its last line of content."""
    end: int
    """End of its own trailing comment lines (content_end when it has none)."""


class StackText:
    """One stack file's text, its validated configuration and where its users list is."""

    def __init__(self, path: Path, project: Path, raw: bytes, stack_file: StackFile):
        self.path, self.project, self.raw, self.stack_file = path, project, raw, stack_file
        self.source = path.name
        self.text = raw.decode("utf-8")
        if UNICODE_BREAKS.search(self.text):
            self._refuse(None, "holds a Unicode line or paragraph separator (U+0085/U+2028/U+2029), which YAML "
                               "reads as a line break; replace it to edit the file with this command")
        first_break = re.search(r"\r\n|\n|\r", self.text)
        self.newline = first_break.group() if first_break else "\n"
        """New lines end as the file's first line does."""
        root = yaml.compose(self.text, Loader=_UniqueKeyLoader)  # the reader's limits: aliases, depth
        tokens = [t for t in yaml.scan(self.text, Loader=yaml.SafeLoader)
                  if not isinstance(t, (yaml.BlockEndToken, yaml.StreamEndToken, yaml.DocumentEndToken))]
        self._starts = [t.start_mark.index for t in tokens]
        self._ends = [t.end_mark.index for t in tokens]
        self._dashes = [t.start_mark.index for t in tokens if isinstance(t, yaml.BlockEntryToken)]
        self.root = root
        self.config_key, self.config = _entry(root, "config") if isinstance(root, yaml.MappingNode) else (None, None)
        self.users_key, self.users = (_entry(self.config, USERS_KEY) if isinstance(self.config, yaml.MappingNode)
                                      else (None, None))
        self.items = self._items()

    @classmethod
    def read(cls, path: Path, project: Path) -> "StackText":
        """Read and validate the file as render does (size, encoding, aliases, keys, values) before any edit."""
        stack_file = read_stack_file(path, project)
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
        changed = StackConfigError(path.name, [ConfigIssue(None, "changed while it was being read; run again")])
        if len(raw) > MAX_FILE_BYTES:  # it grew since it was validated
            raise changed
        try:
            return cls(path, project, raw, stack_file)
        except yaml.YAMLError:  # it changed since it was validated
            raise changed from None

    # --- actions -------------------------------------------------------------------------------------------------

    def add(self, name: str, role: str, auth: str, zone: Optional[str], groups: list[str]) -> tuple[str, str]:
        users = self.stack_file.estate.users
        index = len(users)
        fields = {"name": name, "role": role, **({"auth": auth} if auth != "password" else {}),
                  **({"zone": zone} if zone is not None else {}), **({"groups": groups} if groups else {})}
        try:  # the model's own grammar and choices, before anything of it is written as YAML
            User.model_validate(fields, by_alias=True, by_name=False)
        except ValidationError as exc:
            err = exc.errors()[0]
            self._refuse([USERS, index, *err["loc"]], describe_pydantic_error(err))
        taken = next((i for i, user in enumerate(users) if user.name == name), None)
        if taken is not None:
            self._refuse([USERS, index, "name"], f"{name!r} is already a user ({USERS}[{taken}])")
        reserved = internal_users(self.stack_file.estate.broker.name)
        if name in reserved:  # worded as stacks/checks.py words it
            self._refuse([USERS, index, "name"], f"{name!r} is the identity of {reserved[name]} (choose another "
                                                 "name: it would share that identity's ACL)")
        if isinstance(self.users, yaml.SequenceNode) and self.users.flow_style and self.users.value:
            self._refuse_flow()
        if self.items and self.items[-1].node.flow_style:
            item_text = self._flow_item(fields)
        else:
            item_text = self._block_item(fields)
        summary = (f"{self.source}: added {name} ({role}, {auth}) as {USERS_KEY}[{index}]; "
                   f"render to issue its {_credentials(auth)}")
        return self._insert_item(item_text), summary

    def remove(self, name: str) -> tuple[str, str]:
        i = self._index_of(name)
        item = self.items[i]
        start, end = item.start, item.end
        if end == len(self.text) and not self.text.endswith(BREAKS) and start > 0:
            start -= len(_break_before(self.text, start))  # the file had no final newline: it keeps having none
        return self.text[:start] + self.text[end:], f"{self.source}: removed {name} ({USERS_KEY}[{i}])"

    def rotate(self, name: str) -> tuple[str, str]:
        i = self._index_of(name)
        user = self.stack_file.estate.users[i]
        secret = f"{PROJECT}:{SECRET_KEY_PREFIX}{name}"
        if secret in self.stack_file.secret_keys:
            self._refuse([f"{SECRET_KEY_PREFIX}{name}"], f"{name}'s password is supplied, not generated, so it cannot "
                                                         f"be rotated here: set a new one with `pulumi config set "
                                                         f"--secret {secret} <new password>`")
        item = self.items[i]
        rotation = user.rotation + 1
        found = _entry(item.node, "rotation")
        if found[1] is not None:
            value = found[1]
            if not item.dash < value.start_mark.index < item.end:  # an alias to a value elsewhere
                self._refuse([USERS, i, "rotation"], "is an alias (*name); edit it by hand")
            text = self.text[:value.start_mark.index] + str(rotation) + self.text[value.end_mark.index:]
        elif item.node.flow_style:
            at = self._content_end(item.node.start_mark.index, item.node.end_mark.index - 1)
            text = self.text[:at] + f", rotation: {rotation}" + self.text[at:]
        else:
            column = item.node.start_mark.column
            text = self._insert_lines(item.content_end, [" " * column + f"rotation: {rotation}"])
        what = _credentials(user.auth)
        return text, (f"{self.source}: {USERS_KEY}[{i}].rotation: {user.rotation} -> {rotation}; render (or pulumi "
                      f"up) to issue {name} a new {what}")

    # --- writing -------------------------------------------------------------------------------------------------

    def write(self, new_text: str) -> StackFile:
        """Validate `new_text` as render would read it, then put it in place atomically; the stack file of it."""
        target = Path(os.path.realpath(self.path))  # a symbolic link stays one: its target is edited
        mode = stat.S_IMODE(target.stat().st_mode)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".users.tmp", dir=target.parent)
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(new_text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                stack_file = read_stack_file(temp, self.project)
            except StackConfigError as exc:  # the lines name the stack file, not the temporary one
                raise StackConfigError(self.source, exc.issues) from None
            os.chmod(temp, mode)
            with target.open("rb") as handle:
                if handle.read(MAX_FILE_BYTES + 1) != self.raw:
                    self._refuse(None, "changed while it was being edited; nothing written (run the command again)")
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        stack_file.path = self.path
        stack_file.warnings = [w.line(self.source) for w in warnings(stack_file.estate)]
        return stack_file

    # --- where things are ----------------------------------------------------------------------------------------

    def _items(self) -> list[Item]:
        users = self.users
        if not isinstance(users, yaml.SequenceNode) or users.flow_style:
            return []
        end_of_list = users.end_mark.index
        items, last = [], users.start_mark.index - 1
        for node in users.value:
            start = node.start_mark.index
            if not last < start < end_of_list or not isinstance(node, yaml.MappingNode):  # an alias (*name)
                self._refuse([USERS], "holds an alias (*name) or an item that is not a mapping; edit it by hand")
            last = start
            dash = self._dashes[bisect.bisect_left(self._dashes, start) - 1]
            items.append([node, dash])
        found = []
        for k, (node, dash) in enumerate(items):
            region_end = items[k + 1][1] if k + 1 < len(items) else end_of_list
            content_end = _line_end(self.text, self._content_end(dash, region_end) - 1)
            end = content_end
            column = dash - _line_start(self.text, dash)
            while end < region_end:
                line = self.text[end:_line_end(self.text, end)]
                stripped = line.lstrip(" ")
                if not stripped.startswith("#") or len(line) - len(stripped) <= column:
                    break
                end += len(line)
            found.append(Item(node, dash, _line_start(self.text, dash), content_end, end))
        return found

    def _content_end(self, start: int, end: int) -> int:
        """End of the last token that starts in [start, end): where content stops before comments and blanks."""
        last = bisect.bisect_left(self._starts, end) - 1
        first = bisect.bisect_left(self._starts, start)
        return max(self._ends[first:last + 1], default=start + 1)

    def _index_of(self, name: str) -> int:
        users = self.stack_file.estate.users
        i = next((i for i, user in enumerate(users) if user.name == name), None)
        if i is None:
            known = ", ".join(user.name for user in users) or "none"
            self._refuse([USERS], f"no user {safe_text(name)!r} (users: {known})")
        if self.users.flow_style:
            self._refuse_flow()
        return i

    # --- building the new text -----------------------------------------------------------------------------------

    def _block_item(self, fields: dict) -> list[str]:
        if self.items:
            item = self.items[-1]
            dash_column = item.dash - item.start
            key_column = item.node.start_mark.column
        else:
            dash_column = 2 + (self.users_key.start_mark.column if self.users_key is not None
                               else self._config_column())
            key_column = dash_column + 2
        lines = []
        for key, value in fields.items():
            lead = "-" + " " * (key_column - dash_column - 1) if not lines else " " * (key_column - dash_column)
            lines.append(" " * dash_column + lead + f"{key}: {_scalar(value)}")
        return lines

    def _flow_item(self, fields: dict) -> list[str]:
        item = self.items[-1]
        opening = self.text[item.node.start_mark.index:item.node.start_mark.index + 2]
        pad = " " if opening == "{ " else ""
        body = ", ".join(f"{key}: {_scalar(value)}" for key, value in fields.items())
        return [" " * (item.dash - item.start) + "- {" + pad + body + pad + "}"]

    def _insert_item(self, lines: list[str]) -> str:
        if self.items:
            return self._insert_lines(self.items[-1].end, lines)
        if self.users_key is not None:  # `mqtt-estate:users:` with nothing, null or [] after it
            value = self.users
            text = self.text[:value.start_mark.index] + self.text[value.end_mark.index:]
            after_key = _line_end(text, self.users_key.end_mark.index)
            return self._insert_lines(after_key, lines, text)
        key = [" " * self._config_column() + f"{USERS_KEY}:"]
        if self.config is None:  # no `config:` at all
            if self.root is not None and not (isinstance(self.root, yaml.MappingNode) and not self.root.flow_style
                                              and self.root.start_mark.column == 0):
                self._refuse(None, "the file must be a block mapping with a `config:` section to add a user to it")
            return self._insert_lines(len(self.text), ["config:"] + key + lines)
        if isinstance(self.config, yaml.ScalarNode):  # `config:` with nothing after it
            return self._insert_lines(_line_end(self.text, self.config_key.end_mark.index), key + lines)
        if self.config.flow_style:
            self._refuse(None, "config: is written in flow style ({...}); write it as a block mapping to add users "
                               "with this command")
        at = _line_end(self.text, self._content_end(self.config.start_mark.index, self.config.end_mark.index) - 1)
        column = self._config_column()
        while at < len(self.text):  # the last key's own trailing comments stay with it
            line = self.text[at:_line_end(self.text, at)]
            stripped = line.lstrip(" ")
            if not stripped.startswith("#") or len(line) - len(stripped) <= column:
                break
            at += len(line)
        return self._insert_lines(at, key + lines)

    def _insert_lines(self, at: int, lines: list[str], text: Optional[str] = None) -> str:
        text = self.text if text is None else text
        block = "".join(line + self.newline for line in lines)
        if at == len(text) and text and not text.endswith(BREAKS):  # no final newline: none after the new lines
            block = self.newline + block[:-len(self.newline)]
        return text[:at] + block + text[at:]

    def _config_column(self) -> int:
        if isinstance(self.config, yaml.MappingNode) and self.config.value:
            return self.config.value[0][0].start_mark.column
        return 2

    def _refuse(self, loc, message: str):
        raise StackConfigError(self.source, [ConfigIssue(loc, message)])

    def _refuse_flow(self):
        self._refuse([USERS], "is written as a flow list ([...]); write it as a block list, one `- name: ...` item "
                              "per user, to edit it with this command")


def _entry(mapping: yaml.MappingNode, key: str) -> tuple[Optional[yaml.Node], Optional[yaml.Node]]:
    for key_node, value in mapping.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node, value
    return None, None


def _credentials(auth: str) -> str:
    return {"password": "password", "certificate": "key and certificate",
            "both": "password, key and certificate"}[auth]


def _scalar(value) -> str:
    """A value as YAML: plain when it reads back as the same text, else single-quoted; lists in flow style."""
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    plain = str(value)
    try:
        if yaml.safe_load(f"[{plain}]") == [value] and yaml.safe_load(f"k: {plain}") == {"k": value}:
            return plain
    except yaml.YAMLError:
        pass
    return "'" + plain.replace("'", "''") + "'"


def _line_start(text: str, index: int) -> int:
    return max(text.rfind("\n", 0, index), text.rfind("\r", 0, index)) + 1


def _line_end(text: str, index: int) -> int:
    """Index after the line break ending the line that holds `index` (len(text) on the last line without one)."""
    index = max(index, 0)
    found = [i for i in (text.find("\n", index), text.find("\r", index)) if i >= 0]
    if not found:
        return len(text)
    at = min(found)
    return at + 2 if text.startswith("\r\n", at) else at + 1


def _break_before(text: str, index: int) -> str:
    return "\r\n" if text.endswith("\r\n", 0, index) else text[index - 1]
