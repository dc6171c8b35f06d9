"""Helpers the rules share: declaring a policy in one call, and reading Kubernetes objects and broker files."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional

from pulumi_policy import (EnforcementLevel, PolicyConfigSchema, ResourceValidationPolicy, StackValidationPolicy)

from components.mosquitto_conf import MosquittoConf, parse_mosquitto_conf

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY
WORKLOADS = ("kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:DaemonSet")
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
TLS_ORDER = {"tlsv1": 0, "tlsv1.1": 1, "tlsv1.2": 2, "tlsv1.3": 3}
"""mosquitto tls_version names, oldest first, for minimum-version checks on listeners and bridges."""
SECRET = "kubernetes:core/v1:Secret"

Check = Callable[[Mapping[str, Any], Mapping[str, Any]], Iterable[str]]
StackCheck = Callable[[list, Mapping[str, Any]], Iterable[tuple[Any, str]]]


def _schema(config: Optional[dict]) -> Optional[PolicyConfigSchema]:
    return PolicyConfigSchema(properties=config) if config else None


def resource_policy(name: str, description: str, level: EnforcementLevel, remediation: str,
                    types: Iterable[str], check: Check, config: Optional[dict] = None) -> ResourceValidationPolicy:
    """A policy over resources of `types`; `check(props, config)` yields one message per violation."""
    wanted = tuple(types)

    def validate(args, report_violation):
        if not args.resource_type.startswith(wanted):
            return
        defaults = {key: spec.get("default") for key, spec in (config or {}).items()}
        for message in check(args.props, {**defaults, **dict(args.get_config() or {})}):
            report_violation(message, None)

    return ResourceValidationPolicy(name=name, description=description, enforcement_level=level, validate=validate,
                                    remediation_steps=remediation, config_schema=_schema(config))


def stack_policy(name: str, description: str, level: EnforcementLevel, remediation: str, check: StackCheck,
                 config: Optional[dict] = None) -> StackValidationPolicy:
    """A policy over the whole stack; `check(resources, config)` yields (resource or None, message)."""

    def validate(args, report_violation):
        defaults = {key: spec.get("default") for key, spec in (config or {}).items()}
        for resource, message in check(list(args.resources), {**defaults, **dict(args.get_config() or {})}):
            report_violation(message, getattr(resource, "urn", None))

    return StackValidationPolicy(name=name, description=description, enforcement_level=level, validate=validate,
                                 remediation_steps=remediation, config_schema=_schema(config))


def plain(value: Any) -> Any:
    """Secret values may arrive wrapped; policies only need the text."""
    if isinstance(value, dict) and "value" in value and len(value) <= 2:
        return value["value"]
    return value


def object_data(props: Mapping[str, Any]) -> dict[str, str]:
    data = dict(props.get("data") or {})
    data.update(props.get("stringData") or {})
    return {key: plain(value) for key, value in data.items() if isinstance(plain(value), str)}


def mosquitto_confs(props: Mapping[str, Any]) -> dict[str, MosquittoConf]:
    """Every mosquitto configuration a ConfigMap carries, by key."""
    return {key: parse_mosquitto_conf(text) for key, text in object_data(props).items()
            if key.endswith(".conf") and "\nlistener " in "\n" + text}


def pod_spec(props: Mapping[str, Any]) -> dict:
    return ((props.get("spec") or {}).get("template") or {}).get("spec") or {}


def containers(props: Mapping[str, Any]) -> list[dict]:
    spec = pod_spec(props)
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def labels_of(props: Mapping[str, Any]) -> dict:
    return ((props.get("metadata") or {}).get("labels")) or {}


def name_of(props: Mapping[str, Any]) -> str:
    return (props.get("metadata") or {}).get("name", "?")


def is_loopback(bind: Optional[str]) -> bool:
    return bind is not None and (bind.startswith("127.") or bind in ("::1", "localhost"))


def setting(conf: MosquittoConf, key: str) -> Optional[str]:
    values = conf.settings.get(key)
    return values[-1] if values else None
