"""Read a Pulumi stack file (Pulumi.<stack>.yaml) into the values the program and the validator need.

Every problem in the file is reported, each on its own line, before anything runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacks.errors import PROJECT, ConfigIssue, StackConfigError
from stacks.load import validate_estate
from stacks.model import CA_SECRET_KEYS, SECRET_KEY_PREFIX, Estate

DOCUMENT_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")
OTHER_NAMESPACES = ("pulumi", "kubernetes", "random", "tls")
"""Config namespaces the program's providers read; any other is most likely a misspelt `mqtt-estate`."""


@dataclass
class StackFile:
    path: Path
    estate: Estate
    pulumi_config: dict[str, str]
    """Every key as the Pulumi runtime holds it: 'project:key' -> string (objects as JSON)."""
    secret_keys: list[str]


def is_secret_key(key: str) -> bool:
    return key.startswith(SECRET_KEY_PREFIX) or key in CA_SECRET_KEYS


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (Pulumi's own reader refuses it too)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _parse(path: Path) -> Any:
    if not path.exists():
        raise StackConfigError(path.name, [ConfigIssue(None, f"no such stack file: {path}")])
    if not path.is_file():
        raise StackConfigError(path.name, [ConfigIssue(None, f"{path} is not a file")])
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StackConfigError(path.name, [ConfigIssue(None, f"not UTF-8 text (byte {exc.start})")]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        where = f"line {min(mark.line + 1, max(lines, 1))}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
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


def read_stack_file(path: Path) -> StackFile:
    source = path.name
    document = _parse(path)
    issues: list[ConfigIssue] = []
    if not isinstance(document, dict):
        raise StackConfigError(source, [ConfigIssue(None, "the file must be a mapping with a `config:` section")])
    for key in document:
        if key not in DOCUMENT_KEYS:
            issues.append(ConfigIssue(None, f"{key}: unknown top-level key (allowed: {', '.join(DOCUMENT_KEYS)})"))
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise StackConfigError(source, issues + [ConfigIssue(None, "config: must be a mapping of "
                                                                   f"'{PROJECT}:<key>' to values")])
    values: dict[str, Any] = {}
    pulumi_config: dict[str, str] = {}
    secret_keys: list[str] = []
    for full_key, value in config.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep or not key or not namespace:
            issues.append(ConfigIssue(None, f"config.{full_key}: keys must look like '{PROJECT}:<key>'"))
            continue
        if namespace != PROJECT and namespace not in OTHER_NAMESPACES:
            issues.append(ConfigIssue(None, f"config.{full_key}: unknown namespace {namespace!r} "
                                            f"(use {PROJECT}, or one of {', '.join(OTHER_NAMESPACES)})"))
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
        elif namespace == PROJECT:
            values[key] = value
        pulumi_config[full_key] = value if isinstance(value, str) else json.dumps(value)
    present = {k.split(":", 1)[1]: True for k in secret_keys}
    try:
        estate = validate_estate(values, present, source)
    except StackConfigError as exc:
        raise StackConfigError(source, issues + exc.issues) from None
    if issues:
        raise StackConfigError(source, issues)
    return StackFile(path, estate, pulumi_config, secret_keys)
