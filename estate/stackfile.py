"""Read a Pulumi stack file (Pulumi.<stack>.yaml) into the values the program and the validator need.

Every problem in the file is reported, each on its own line, before anything runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stacks.errors import PROJECT, ConfigIssue, StackConfigError, safe_text
from stacks.checks import warnings
from stacks.load import OTHER_NAMESPACES, is_secret_key, unknown_namespace, validate_with
from stacks.model import Estate

DOCUMENT_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")


@dataclass
class StackFile:
    path: Path
    estate: Estate
    pulumi_config: dict[str, str]
    """Every key as the Pulumi runtime holds it: 'project:key' -> string (objects as JSON)."""
    secret_keys: list[str]
    warnings: list[str] = field(default_factory=list)
    """Settings that work but are most likely a mistake, one line each."""


MAX_FILE_BYTES = 1 << 20
"""Stack files are a few kilobytes; anything over 1 MiB is refused unread."""
MAX_VALUES = 100_000
"""Values aliases may add to a document (the shipped stacks hold a few hundred values in all). Counted while the
file is composed, before any Python object is built: a 550-byte billion-laughs file expands to millions."""
MAX_DEPTH = 100
"""Nesting deeper than this is refused instead of exhausting Python's recursion limit."""
NO_SUCH_STRUCTURE = "stack files need no such structure"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (Pulumi's own reader refuses it too), and
    documents whose aliases expand without bound, whose aliases form a cycle, or that nest absurdly deep.

    Expansion is counted on the composed node graph with memoization: every node's expanded size is known once
    it is composed, so an alias adds its target's size in O(1) and the count stops at the first alias that makes
    aliases add more than MAX_VALUES values. Nothing is expanded to find that out. (Values written out are
    bounded by the file size limit, not by this count.)"""

    max_values = MAX_VALUES
    max_depth = MAX_DEPTH

    def __init__(self, stream):
        super().__init__(stream)
        self.expanded = 0
        """Values the document expands to so far (each scalar, sequence and mapping counts 1, an alias its
        target's whole size)."""
        self.written = 0
        """Of those, values written out in the file (the rest come from aliases)."""
        self.peak_expanded = 0
        """The largest count reached (it stops growing at the first alias past the limit)."""
        self._sizes: dict[int, int] = {}
        """id(node) -> expanded size, for every node whose composition is complete."""
        self._depth = 0

    def compose_document(self):
        self.expanded, self.written, self._sizes = 0, 0, {}
        return super().compose_document()

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)  # the anchored node itself (undefined aliases raise)
            size = self._sizes.get(id(node))
            if size is None:  # its anchor is still being composed: the alias is inside the value it names
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} refers to a value that contains it "
                                f"(recursive structures are not allowed; {NO_SUCH_STRUCTURE})", event.start_mark)
            self._count(size, event.start_mark, f"alias *{event.anchor}")
            return node
        event = self.peek_event()
        self._depth += 1
        if self._depth > self.max_depth:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {self.max_depth} levels deep ({NO_SUCH_STRUCTURE})", event.start_mark)
        before = self.expanded
        self.written += 1
        self._count(1, event.start_mark, "this value")
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self.expanded - before
        return node

    def _count(self, size: int, mark, what: str) -> None:
        self.expanded += size
        self.peak_expanded = max(self.peak_expanded, self.expanded)
        if self.expanded - self.written > self.max_values:
            raise _ExpansionError(what, self.max_values, mark)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be plain text, not a list or mapping", key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


    def construct_yaml_timestamp(self, node):
        """Dates stay the text they were written as (Pulumi hands config values to programs as text)."""
        return self.construct_scalar(node)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(None, None, "a number far too long for any setting",
                                                    node.start_mark) from None

    def refuse_tag(self, node):
        raise yaml.constructor.ConstructorError(None, None, f"{node.tag.rsplit(':', 1)[-1]} values are not allowed "
                                                "in a stack file (use text, numbers, true/false, lists and mappings)",
                                                node.start_mark)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _UniqueKeyLoader.construct_yaml_timestamp)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)
for _tag in ("binary", "set", "omap", "pairs"):
    _UniqueKeyLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _UniqueKeyLoader.refuse_tag)


class _ExpansionError(yaml.composer.ComposerError):
    """A document that expands past the limit: valid YAML, refused as hostile."""

    def __init__(self, what: str, limit: int, mark):
        super().__init__(None, None, f"{what} refused (aliases expand to more than {limit} values; "
                                     f"{NO_SUCH_STRUCTURE})", mark)


def _parse(path: Path) -> Any:
    if not path.exists():
        raise StackConfigError(path.name, [ConfigIssue(None, f"no such stack file: {path}")])
    if not path.is_file():
        raise StackConfigError(path.name, [ConfigIssue(None, f"{path} is not a file")])
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise StackConfigError(path.name, [ConfigIssue(None, f"{size} bytes is too large for a stack file (at most "
                                                             f"{MAX_FILE_BYTES} bytes; {NO_SUCH_STRUCTURE})")])
    with path.open("rb") as handle:  # read at most the limit, even if the file grew since stat()
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise StackConfigError(path.name, [ConfigIssue(None, f"more than {MAX_FILE_BYTES} bytes is too large for a "
                                                             f"stack file ({NO_SUCH_STRUCTURE})")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StackConfigError(path.name, [ConfigIssue(None, f"not UTF-8 text (byte {exc.start})")]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        where = f"line {min(mark.line + 1, max(lines, 1))}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, _ExpansionError) or NO_SUCH_STRUCTURE in problem:
            raise StackConfigError(path.name, [ConfigIssue(None, f"{where}{problem}")]) from None
        raise StackConfigError(path.name, [ConfigIssue(None, f"{where}not valid YAML ({problem})")]) from None


def _encrypted_paths(value: Any, loc: list) -> list[list]:
    """Places holding `{secure: ...}` ciphertext, at any depth."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return [loc]
        return [p for k, v in value.items() for p in _encrypted_paths(v, loc + [k])]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _encrypted_paths(v, loc + [i])]
    return []


PROJECT_FILE = Path(__file__).resolve().parent.parent / "Pulumi.yaml"


def project_config(path: Path = PROJECT_FILE) -> dict[str, Any]:
    """Project-level `config:` values of Pulumi.yaml ('namespace:key' -> value); every stack inherits them unless
    it sets the key itself (pulumi/pulumi pkg/workspace/config.go mergeConfig)."""
    document = _parse(path) if path.is_file() else {}
    config = document.get("config") if isinstance(document, dict) else None
    return {str(key): entry["value"] for key, entry in (config or {}).items()
            if isinstance(entry, dict) and "value" in entry}


def read_stack_file(path: Path, project: Path = PROJECT_FILE) -> StackFile:
    source = path.name
    document = _parse(path)
    issues: list[ConfigIssue] = []
    if not isinstance(document, dict):
        raise StackConfigError(source, [ConfigIssue(None, "the file must be a mapping with a `config:` section")])
    for key in document:
        if key not in DOCUMENT_KEYS:
            issues.append(ConfigIssue(None, f"{safe_text(key)}: unknown top-level key (allowed: {', '.join(DOCUMENT_KEYS)})"))
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise StackConfigError(source, issues + [ConfigIssue(None, "config: must be a mapping of "
                                                                   f"'{PROJECT}:<key>' to values")])
    values: dict[str, Any] = {}
    pulumi_config: dict[str, str] = {}
    secret_keys: list[str] = []
    secrets: dict[str, str] = {}
    provider: dict[str, Any] = {}
    for full_key, value in project_config(project).items():
        if full_key.startswith("kubernetes:") and full_key not in config:
            provider[full_key.split(":", 1)[1]] = value
            pulumi_config[full_key] = value if isinstance(value, str) else json.dumps(value)
    for full_key, value in config.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep or not key or not namespace:
            issues.append(ConfigIssue(None, f"config.{safe_text(full_key)}: keys must look like '{PROJECT}:<key>'"))
            continue
        if namespace != PROJECT and namespace not in OTHER_NAMESPACES:
            issues.append(unknown_namespace(full_key))
            continue
        encrypted = _encrypted_paths(value, [key])
        if encrypted:
            issues += [ConfigIssue(loc, "encrypted values need the Pulumi CLI to decrypt; for offline runs give a "
                                        "plain value in a local file passed with --config") for loc in encrypted]
            continue
        if namespace == PROJECT and is_secret_key(key):
            if not isinstance(value, str):
                issues.append(ConfigIssue([key], "is not allowed (use a string)"))
                continue
            secret_keys.append(full_key)
            secrets[key] = value
        elif namespace == PROJECT:
            values[key] = value
        elif namespace == "kubernetes":
            provider[key] = value
        pulumi_config[full_key] = value if isinstance(value, str) else json.dumps(value)
    estate = validate_with(issues, values, secrets, source, provider)
    return StackFile(path, estate, pulumi_config, secret_keys, [w.line(source) for w in warnings(estate)])
