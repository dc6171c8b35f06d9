"""Helpers the rules share: declaring a policy in one call, and reading Kubernetes objects and broker files.

Every reader here accepts whatever a program may register: props arrive as plain dicts offline and as
read-only Mapping proxies under `pulumi preview`, numbers may be strings, and any field may be missing or None.
A check that still fails on something unforeseen reports that as a violation of its policy instead of
stopping the run (fail closed); only Pulumi's own "unknown during preview" signal is passed through.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable, Optional

from pulumi_policy import (EnforcementLevel, PolicyConfigSchema, ResourceValidationPolicy, StackValidationPolicy)

from ..components.mosquitto_conf import MosquittoConf, c_atoi, parse_mosquitto_conf

try:  # raised by the preview proxies for values that are not known yet; Pulumi reports it itself
    from pulumi_policy.proxy import UnknownValueError
except ImportError:  # pragma: no cover - older pulumi-policy
    class UnknownValueError(Exception):  # type: ignore[no-redef]
        pass

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


def _config(config: Optional[dict], given: Any) -> dict:
    """The policy's settings: defaults, then what the pack config gives (numbers given as text are read)."""
    values = {key: spec.get("default") for key, spec in (config or {}).items()}
    for key, value in dict(given or {}).items():
        kind = ((config or {}).get(key) or {}).get("type")
        if kind in ("integer", "number") and not isinstance(value, (int, float)):
            number = as_number(value)
            value = values.get(key) if number is None else (int(number) if kind == "integer" else number)
        elif kind == "array" and isinstance(value, str):
            value = [value]
        values[key] = value
    return values


def _failure(exc: Exception) -> str:
    return f"could not evaluate this resource ({type(exc).__name__}: {str(exc)[:200]}); fix the input or the policy"


def resource_policy(name: str, description: str, level: EnforcementLevel, remediation: str,
                    types: Iterable[str], check: Check, config: Optional[dict] = None,
                    with_provider: bool = False) -> ResourceValidationPolicy:
    """A policy over resources of `types`; `check(props, config)` yields one message per violation.

    `with_provider`: `check(props, config, provider)`, where provider is the resource's provider as Pulumi hands
    it over (a PolicyProviderResource: resource_type, urn, name and props, its inputs), or None when none came."""
    wanted = tuple(types)

    def validate(args, report_violation):
        if not str(args.resource_type or "").startswith(wanted):
            return
        props = args.props if isinstance(args.props, Mapping) else {}
        extra = (getattr(args, "provider", None),) if with_provider else ()
        try:
            for message in check(props, _config(config, args.get_config()), *extra):
                report_violation(message, None)
        except UnknownValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed, never stop the run
            report_violation(_failure(exc), None)

    return ResourceValidationPolicy(name=name, description=description, enforcement_level=level, validate=validate,
                                    remediation_steps=remediation, config_schema=_schema(config))


def stack_policy(name: str, description: str, level: EnforcementLevel, remediation: str, check: StackCheck,
                 config: Optional[dict] = None) -> StackValidationPolicy:
    """A policy over the whole stack; `check(resources, config)` yields (resource or None, message)."""

    def validate(args, report_violation):
        try:
            for resource, message in check(list(args.resources or []), _config(config, args.get_config())):
                report_violation(message, getattr(resource, "urn", None))
        except UnknownValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed, never stop the run
            report_violation(_failure(exc), None)

    return StackValidationPolicy(name=name, description=description, enforcement_level=level, validate=validate,
                                 remediation_steps=remediation, config_schema=_schema(config))


# --- tolerant readers --------------------------------------------------------------------------------------

def as_map(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return []
    return list(value)


def as_text(value: Any, default: str = "") -> str:
    value = plain(value)
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def as_bool(value: Any) -> Optional[bool]:
    """True/False from a boolean or its text ("true", "False"); None when missing or anything else."""
    value = plain(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def as_number(value: Any) -> Optional[float]:
    """A number from an int, float or text ("3", " 2048 "); None for anything else (booleans included)."""
    value = plain(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip()) if "." in value else int(value.strip())
        except ValueError:
            return None
    return None


def as_int(value: Any, default: Optional[int] = None) -> Optional[int]:
    number = as_number(value)
    return default if number is None else int(number)


def atoi(value: Any, default: int = 0) -> int:
    """C atoi, the way mosquitto reads numbers from its config: leading digits, else `default`."""
    text = as_text(value).strip()
    return c_atoi(text) if re.match(r"^[+-]?\d", text) else default


def plain(value: Any) -> Any:
    """Secret values may arrive wrapped; policies only need the text."""
    if isinstance(value, Mapping) and "value" in value and len(value) <= 2:
        return value["value"]
    return value


def object_data(props: Mapping[str, Any]) -> dict[str, str]:
    """Text of a ConfigMap or Secret by key: `data` (base64 in a Secret) overlaid with `stringData`."""
    props = as_map(props)
    secret = props.get("kind") == "Secret"
    found: dict[str, str] = {}
    for key, value in as_map(props.get("data")).items():
        value = plain(value)
        if isinstance(value, str):
            found[str(key)] = _decoded(value) if secret else value
    for key, value in as_map(props.get("stringData")).items():
        value = plain(value)
        if isinstance(value, str):
            found[str(key)] = value
    return found


def passwd_lines(text: str) -> Iterable[tuple[int, str, str]]:
    """(line number, user, hash field) of each non-blank line of a mosquitto password file."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            user, _, hashed = line.partition(":")
            yield number, user.strip(), hashed.strip()


def _decoded(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return value


def _is_mosquitto(conf: MosquittoConf) -> bool:
    """A `listener` or `connection` line makes a .conf mosquitto's; a file that only has the default listener (from
    `port`, say) must also hold nothing mosquitto would not know (a redis.conf has `port` too)."""
    if any(lst.line for lst in conf.listeners) or conf.bridges:
        return True
    return bool(conf.listeners) and not any("unknown option" in error for error in conf.errors)


def mosquitto_confs(props: Mapping[str, Any]) -> dict[str, MosquittoConf]:
    """Every complete mosquitto configuration a ConfigMap carries (a .conf key with listeners), by key."""
    found = {}
    for key, text in object_data(props).items():
        if key.endswith(".conf"):
            conf = parse_mosquitto_conf(text)
            if conf.listeners and _is_mosquitto(conf):
                found[key] = conf
    return found


def mosquitto_fragments(props: Mapping[str, Any]) -> dict[str, MosquittoConf]:
    """Every .conf key that holds mosquitto listeners or bridges (include_dir fragments too), by key."""
    found = {}
    for key, text in object_data(props).items():
        if key.endswith(".conf"):
            conf = parse_mosquitto_conf(text)
            if (conf.listeners or conf.bridges) and _is_mosquitto(conf):
                found[key] = conf
    return found


def pod_spec(props: Mapping[str, Any]) -> Mapping:
    return as_map(as_map(as_map(as_map(props).get("spec")).get("template")).get("spec"))


def containers(props: Mapping[str, Any]) -> list[Mapping]:
    spec = pod_spec(props)
    return [as_map(c) for c in as_list(spec.get("containers")) + as_list(spec.get("initContainers"))]


def container_name(container: Mapping) -> str:
    return as_text(as_map(container).get("name"), "?") or "?"


def metadata(props: Mapping[str, Any]) -> Mapping:
    return as_map(as_map(props).get("metadata"))


def labels_of(props: Mapping[str, Any]) -> Mapping:
    return as_map(metadata(props).get("labels"))


def name_of(props: Mapping[str, Any]) -> str:
    return as_text(metadata(props).get("name"), "?") or "?"


def namespace_of(props: Mapping[str, Any]) -> Optional[str]:
    namespace = metadata(props).get("namespace")
    return namespace if isinstance(namespace, str) else None


def is_loopback(bind: Optional[str]) -> bool:
    """A listener reachable from inside the pod only: a loopback address, or a unix socket path."""
    if not isinstance(bind, str):
        return False
    return bind.startswith("127.") or bind in ("::1", "localhost") or bind.startswith("/")


def setting(conf: MosquittoConf, key: str) -> Optional[str]:
    values = conf.settings.get(key)
    return values[-1] if values else None
