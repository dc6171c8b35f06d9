"""Read a Pulumi project file (Pulumi.yaml) and stack file (Pulumi.<stack>.yaml) into the values the program and
the validator need.

Every problem in the file is reported, each on its own line, before anything runs. This estate's own program has a
typed configuration (read_stack_file validates it); any other program's stack file is read as Pulumi reads it
(read_program_stack_file), with the same limits on hostile input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ..stacks.errors import PROJECT, ConfigIssue, StackConfigError, key_path, safe_text
from ..stacks.checks import warnings
from ..stacks.load import OTHER_NAMESPACES, is_secret_key, unknown_namespace, validate_with
from ..stacks.model import Estate

DOCUMENT_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")


@dataclass
class StackFile:
    path: Path
    estate: Optional[Estate]
    """The validated typed configuration (None for a program of your own, whose config is its own business)."""
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


def _parse(path: Path, source: Optional[str] = None) -> Any:
    """The YAML document in `path`, within the limits above; problems are reported under `source` (the file's
    name unless given)."""
    source = source or path.name
    if not path.exists():
        raise StackConfigError(source, [ConfigIssue(None, f"no such stack file: {path}")])
    if not path.is_file():
        raise StackConfigError(source, [ConfigIssue(None, f"{path} is not a file")])
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise StackConfigError(source, [ConfigIssue(None, f"{size} bytes is too large for a stack file (at most "
                                                             f"{MAX_FILE_BYTES} bytes; {NO_SUCH_STRUCTURE})")])
    with path.open("rb") as handle:  # read at most the limit, even if the file grew since stat()
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise StackConfigError(source, [ConfigIssue(None, f"more than {MAX_FILE_BYTES} bytes is too large for a "
                                                             f"stack file ({NO_SUCH_STRUCTURE})")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StackConfigError(source, [ConfigIssue(None, f"not UTF-8 text (byte {exc.start})")]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        where = f"line {min(mark.line + 1, max(lines, 1))}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, _ExpansionError) or NO_SUCH_STRUCTURE in problem:
            raise StackConfigError(source, [ConfigIssue(None, f"{where}{problem}")]) from None
        raise StackConfigError(source, [ConfigIssue(None, f"{where}not valid YAML ({problem})")]) from None


def _encrypted_paths(value: Any, loc: list) -> list[list]:
    """Places holding `{secure: ...}` ciphertext, at any depth."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return [loc]
        return [p for k, v in value.items() for p in _encrypted_paths(v, loc + [k])]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _encrypted_paths(v, loc + [i])]
    return []


ENCRYPTED = ("encrypted values need the Pulumi CLI to decrypt; for offline runs give a plain value in a local file "
             "passed with --config")


def _encrypted(full_key: str, value: Any) -> list[ConfigIssue]:
    """One line per `{secure: ...}` in a value, naming its key path ('ns:key.path[0]')."""
    return [ConfigIssue(None, f"{key_path(loc)}: {ENCRYPTED}") for loc in _encrypted_paths(value, [full_key])]


def config_text(value: Any) -> str:
    """A config value as the Pulumi runtime hands it to the program: text as written, anything else as JSON, compact
    and with mapping keys sorted as Go's encoding/json writes it (pulumi/pulumi sdk/go/common/resource/config/
    object.go:403-419, MarshalString; pkg/workspace/config.go:179-193 for project-level values)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)


def pulumi_key(key: Any, project: str) -> Optional[str]:
    """A stack or project config key as Pulumi names it ('namespace:name'), or None when Pulumi refuses it.

    A key without a namespace is the project's own (pulumi/pulumi sdk/go/common/workspace/loaders.go:61-89 for stack
    files, pkg/workspace/config.go:159-168 for Pulumi.yaml); `ns:config:name` is the old form of `ns:name`; any
    other number of colons is refused (sdk/go/common/resource/config/key.go:45-70, ParseKey), and so, offline, is
    an empty namespace or name."""
    text = str(key)
    parts = text.split(":")
    if len(parts) == 1:
        parts = [project, text]
    elif len(parts) == 3 and parts[1] == "config":
        parts = [parts[0], parts[2]]
    return ":".join(parts) if len(parts) == 2 and all(parts) else None


def _not_a_key(raw_key: Any) -> ConfigIssue:
    return ConfigIssue(None, f"config.{safe_text(raw_key)}: not a config key (use <name> for the project's own, or "
                             "<namespace>:<name>)")


def _config_section(path: Path, namespace: str) -> tuple[str, dict, list[ConfigIssue]]:
    """The stack file's `config:` mapping, with the problems of the document around it."""
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
                                                                   f"'{namespace}:<key>' to values")])
    return source, config, issues


PROJECT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
"""What Pulumi accepts as a project name (pulumi/pulumi sdk/go/common/tokens/project.go:28-38, names.go:38-43)."""


@dataclass(frozen=True)
class ProjectFile:
    """What the offline engine uses of a Pulumi.yaml."""

    path: Path
    name: str
    main: Optional[str] = None
    """Where the program is, relative to the project directory (None: the directory itself)."""
    stack_config_dir: Optional[str] = None
    """Where the stack files are, relative to the project directory (None: beside Pulumi.yaml)."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """'namespace:key' -> the value every stack gets unless its stack file sets the key."""
    required: tuple[str, ...] = ()
    """Project keys declared without a value or default: every stack file must set them."""


def _text_field(document: dict, key: str, issues: list[ConfigIssue]) -> Optional[str]:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        issues.append(ConfigIssue(None, f"{key}: must be text (a path relative to this file's directory)"))
        return None
    return value


def read_project_file(path: Path, source: Optional[str] = None) -> ProjectFile:
    """Pulumi.yaml: the project's name and runtime (Python: the only one the offline engine runs), `main`,
    `stackConfigDir` and project-level `config:` (applied as pulumi/pulumi pkg/workspace/config.go:255-366
    mergeConfig does: a value or default fills a key the stack file leaves out, a project key declared with neither
    must be set by every stack; short forms as sdk/go/common/workspace/project.go:470-517)."""
    source = source or path.name
    document = _parse(path, source)
    if not isinstance(document, dict):
        raise StackConfigError(source, [ConfigIssue(None, "the file must be a mapping with `name:` and `runtime:`")])
    issues: list[ConfigIssue] = []
    name = document.get("name")
    if not isinstance(name, str) or not PROJECT_NAME.fullmatch(name):
        issues.append(ConfigIssue(None, f"name: {_shown(name)} is not a project name (use 1 to 100 letters, digits, "
                                        "hyphens, underscores and periods)"))
        name = None
    runtime = document.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if runtime_name != "python":
        issues.append(ConfigIssue(None, f"runtime: {_shown(runtime_name)} cannot run offline (the offline engine "
                                        "runs Python programs: `runtime: python`)"))
    main = _text_field(document, "main", issues)
    config = document.get("config")
    stack_config_dir = _text_field(document, "stackConfigDir", issues)
    if isinstance(config, str):  # the old spelling of stackConfigDir (sdk/go/common/workspace/project.go:444-467)
        stack_config_dir, config = stack_config_dir or config, None
    if config is not None and not isinstance(config, dict):
        issues.append(ConfigIssue(None, "config: must be a mapping of config keys to values or declarations"))
        config = None
    defaults: dict[str, Any] = {}
    required: list[str] = []
    for raw_key, entry in (config or {}).items():
        full_key = pulumi_key(raw_key, name or "project")
        if full_key is None:
            issues.append(_not_a_key(raw_key))
        elif not isinstance(entry, dict):
            defaults[full_key] = entry  # the short form: a value (another namespace) or a default (the project's)
        elif "value" in entry or "default" in entry:
            defaults[full_key] = entry["default"] if "default" in entry else entry["value"]
        elif full_key.partition(":")[0] == name:
            required.append(full_key)
    if issues:
        raise StackConfigError(source, issues)
    return ProjectFile(path, name, main, stack_config_dir, defaults, tuple(required))


def _shown(value: Any) -> str:
    if value is None:
        return "(missing)"
    return repr(safe_text(value)) if isinstance(value, str) else safe_text(json.dumps(value, default=str))


PROJECT_FILE = Path(__file__).resolve().parent.parent / "Pulumi.yaml"


def project_config(path: Path = PROJECT_FILE) -> dict[str, Any]:
    """Project-level `config:` values of Pulumi.yaml ('namespace:key' -> value); every stack inherits them unless
    it sets the key itself (read_project_file)."""
    return read_project_file(path).defaults if path.is_file() else {}


def read_stack_file(path: Path, project: Path = PROJECT_FILE) -> StackFile:
    """This estate's stack file, validated against its typed configuration."""
    source, config, issues = _config_section(path, PROJECT)
    values: dict[str, Any] = {}
    pulumi_config: dict[str, str] = {}
    secret_keys: list[str] = []
    secrets: dict[str, str] = {}
    provider: dict[str, Any] = {}
    for full_key, value in project_config(project).items():
        if full_key.startswith("kubernetes:") and full_key not in config:
            provider[full_key.split(":", 1)[1]] = value
            pulumi_config[full_key] = config_text(value)
    for full_key, value in config.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep or not key or not namespace:
            issues.append(ConfigIssue(None, f"config.{safe_text(full_key)}: keys must look like '{PROJECT}:<key>'"))
            continue
        if namespace != PROJECT and namespace not in OTHER_NAMESPACES:
            issues.append(unknown_namespace(full_key))
            continue
        encrypted = _encrypted(str(full_key), value)
        if encrypted:
            issues += encrypted
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
        pulumi_config[full_key] = config_text(value)
    estate = validate_with(issues, values, secrets, source, provider)
    return StackFile(path, estate, pulumi_config, secret_keys, [w.line(source) for w in warnings(estate)])


def read_program_stack_file(path: Path, project: ProjectFile) -> StackFile:
    """The stack file of a program of your own, as Pulumi reads it: every key namespaced (a bare key is the
    project's), every value as the runtime hands it over (config_text), then the project-level values of Pulumi.yaml
    for keys the file leaves out. Encrypted values cannot be read offline: one line each, saying what to do."""
    source, config, issues = _config_section(path, project.name)
    pulumi_config: dict[str, str] = {}
    for raw_key, value in config.items():
        full_key = pulumi_key(raw_key, project.name)
        encrypted = _encrypted(full_key, value) if full_key else []
        if full_key is None:
            issues.append(_not_a_key(raw_key))
        elif full_key in pulumi_config:  # `key` and `<project>:key` name one key
            issues.append(ConfigIssue(None, f"config.{safe_text(raw_key)}: {safe_text(full_key)} is given twice"))
        elif encrypted:
            issues += encrypted
        else:
            pulumi_config[full_key] = config_text(value)
    for full_key, value in project.defaults.items():
        pulumi_config.setdefault(full_key, config_text(value))
    issues += [ConfigIssue(None, f"{safe_text(key)}: missing ({project.path.name} declares it without a value or "
                                 "default; set it in this file)") for key in project.required if key not in pulumi_config]
    if issues:
        raise StackConfigError(source, issues)
    return StackFile(path, None, pulumi_config, [])
