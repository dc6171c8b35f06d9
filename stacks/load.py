"""Read and validate estate configuration, from Pulumi config or from a plain mapping of stack-file values.

Validation happens twice on purpose: pydantic checks each value's shape, then `stacks.checks` checks what
one value means for another (an mTLS user needs an mTLS listener, a zone must be a known zone, ...).
The same validation runs under `pulumi up` (load_from_pulumi, which sees every key of the namespace) and offline
(estate/stackfile.py).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import pulumi
from pydantic import BaseModel, ValidationError

from pulumi.runtime import config as runtime_config

from .checks import cross_checks, warnings
from .errors import PROJECT, ConfigIssue, StackConfigError, describe_pydantic_error, safe_text
from .model import BRIDGE_SECRET_PREFIXES, CA_SECRET_KEYS, SECRET_KEY_PREFIX, TOP_LEVEL_KEYS, Estate


def _allowed_keys_at(loc: tuple) -> list[str]:
    """The camelCase keys the model accepts at the parent of `loc` (for 'unknown key' messages)."""
    model: Any = Estate
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        model = _model_of(field.annotation)
        if model is None:
            return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_of(annotation: Any) -> Optional[type]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def validate_estate(values: Mapping[str, Any], secrets: Mapping[str, Optional[str]], source: str,
                    provider_config: Optional[Mapping[str, Any]] = None, cross: bool = True) -> Estate:
    """Validate top-level config values (key without the `mqtt-estate:` prefix -> parsed value).

    `secrets` maps each secret key present to its plain value (None where it cannot be read); `provider_config`
    holds the `kubernetes:` keys. Raises StackConfigError listing every issue.
    """
    issues: list[ConfigIssue] = []
    for key in values:
        if key not in TOP_LEVEL_KEYS:
            issues.append(ConfigIssue([key], f"unknown key (allowed: {', '.join(TOP_LEVEL_KEYS)}, "
                                             f"{SECRET_KEY_PREFIX}<user>, {', '.join(CA_SECRET_KEYS)}, "
                                             f"{'<bridge>, '.join(BRIDGE_SECRET_PREFIXES)}<bridge>)"))
    if provider_config is not None:
        issues.extend(provider_checks(provider_config))
    try:
        # by alias only: a snake_case key in a stack file is a typo, not a synonym
        # a section left empty (every line under it commented out) is a section not given
        estate = Estate.model_validate({k: v for k, v in values.items() if k in TOP_LEVEL_KEYS and v is not None},
                                       by_alias=True, by_name=False)
    except ValidationError as exc:
        for err in exc.errors():
            issues.append(ConfigIssue(err["loc"], describe_pydantic_error(err, _allowed_keys_at(err["loc"]))))
        raise StackConfigError(source, issues) from None
    if cross and not issues:  # what one value means for another is moot while keys are misspelt or unknown
        issues.extend(cross_checks(estate, secrets))
    if issues:
        raise StackConfigError(source, issues)
    return estate


OTHER_NAMESPACES = ("pulumi", "kubernetes", "random", "tls", "aws")
"""Config namespaces the program's providers read; any other is most likely a misspelt `mqtt-estate`."""


def unknown_namespace(full_key: str) -> ConfigIssue:
    namespace = full_key.partition(":")[0]
    return ConfigIssue(None, f"config.{safe_text(full_key)}: unknown namespace {safe_text(namespace)!r} "
                             f"(use {PROJECT}, or one of {', '.join(OTHER_NAMESPACES)})")


SECRET_MUTABLE = "enableSecretMutable"


def provider_checks(provider_config: Mapping[str, Any]) -> list[ConfigIssue]:
    """The kubernetes provider must update Secrets in place.

    pulumi-kubernetes replaces a Secret whose data changes unless `enableSecretMutable` is set, and because our
    Secrets have fixed names the replacement deletes the old one first: a pod starting then cannot mount it,
    and a failed `up` can leave it missing (see the README's "What happens on change" for the provider source).
    """
    value = provider_config.get(SECRET_MUTABLE)
    if value is not True and value != "true":  # the provider compares with "true" exactly (provider.go:714-716)
        return [ConfigIssue(None, f"kubernetes:{SECRET_MUTABLE}: must be true (add `kubernetes:{SECRET_MUTABLE}: "
                                  "true` to the stack file): without it the provider deletes and recreates the "
                                  "password, ACL and certificate Secrets on every change")]
    return []


def config_keys() -> dict[str, Any]:
    """Every config key the running program was given ('namespace:key' -> raw value), as the SDK holds them.

    Pulumi.Config only answers for keys it is asked about; reading the whole map is what lets a typo under
    `mqtt-estate:` be refused under `pulumi up` just as offline.
    """
    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def load_from_pulumi() -> tuple[Estate, pulumi.Config]:
    """Read and validate the estate from the running Pulumi program's config (the program's entry point)."""
    config = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    secrets: dict[str, Optional[str]] = {}
    provider: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    source = f"Pulumi.{pulumi.get_stack()}.yaml"
    for full_key, raw in sorted(config_keys().items()):
        namespace, _, key = full_key.partition(":")
        if namespace == "kubernetes":
            provider[key] = raw
        if namespace != PROJECT:
            if namespace not in OTHER_NAMESPACES:
                issues.append(unknown_namespace(full_key))
            continue
        if is_secret_key(key):
            if not runtime_config.is_config_secret(full_key):
                issues.append(ConfigIssue([key], f"is stored in plain text (set it with `pulumi config set --secret "
                                                 f"{full_key} ...`)"))
            secrets[key] = raw if isinstance(raw, str) else None
        else:
            values[key] = _parsed(raw)
    estate = validate_with(issues, values, secrets, source, provider)
    for warning in warnings(estate):
        pulumi.log.warn(warning.line(source))
    return estate, config


def validate_with(issues: list[ConfigIssue], values: Mapping[str, Any], secrets: Mapping[str, Optional[str]],
                  source: str, provider_config: Mapping[str, Any]) -> Estate:
    """validate_estate, reporting the reader's own `issues` (file-level problems) first and all in one error."""
    try:
        estate = validate_estate(values, secrets, source, provider_config, cross=not issues)
    except StackConfigError as exc:
        raise StackConfigError(source, issues + exc.issues) from None
    if issues:
        raise StackConfigError(source, issues)
    return estate


def _parsed(raw: Any) -> Any:
    """Structured values reach the program as JSON text; anything else is passed on for the model to judge."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def is_secret_key(key: str) -> bool:
    return key.startswith((SECRET_KEY_PREFIX, *BRIDGE_SECRET_PREFIXES)) or key in CA_SECRET_KEYS
