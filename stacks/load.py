"""Read and validate estate configuration, from Pulumi config or from a plain mapping of stack-file values.

Validation happens twice on purpose: pydantic checks each value's shape, then `cross_checks` checks what
one value means for another (an mTLS user needs an mTLS listener, a zone must be a known zone, ...).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import pulumi
from pydantic import BaseModel, ValidationError

from stacks.errors import PROJECT, ConfigIssue, StackConfigError, describe_pydantic_error
from stacks.model import CA_SECRET_KEYS, SECRET_KEY_PREFIX, TOP_LEVEL_KEYS, Estate


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


def validate_estate(values: Mapping[str, Any], secret_keys: Mapping[str, Any], source: str) -> Estate:
    """Validate top-level config values (key without the `mqtt-estate:` prefix -> parsed value).

    `secret_keys` holds the names of the secret keys present (their values are not needed to validate).
    Raises StackConfigError listing every issue.
    """
    issues: list[ConfigIssue] = []
    for key in values:
        if key not in TOP_LEVEL_KEYS:
            issues.append(ConfigIssue([key], f"unknown key (allowed: {', '.join(TOP_LEVEL_KEYS)}, "
                                             f"{SECRET_KEY_PREFIX}<user>, {', '.join(CA_SECRET_KEYS)})"))
    try:
        # by alias only: a snake_case key in a stack file is a typo, not a synonym
        estate = Estate.model_validate({k: v for k, v in values.items() if k in TOP_LEVEL_KEYS},
                                       by_alias=True, by_name=False)
    except ValidationError as exc:
        for err in exc.errors():
            issues.append(ConfigIssue(err["loc"], describe_pydantic_error(err, _allowed_keys_at(err["loc"]))))
        raise StackConfigError(source, issues) from None
    issues.extend(cross_checks(estate, secret_keys))
    if issues:
        raise StackConfigError(source, issues)
    return estate


def cross_checks(estate: Estate, secret_keys: Mapping[str, Any]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    broker = estate.broker
    seen_names: dict[str, int] = {}
    seen_ports: dict[int, int] = {}
    for i, lst in enumerate(broker.listeners):
        loc = ["broker", "listeners", i]
        if lst.name in seen_names:
            issues.append(ConfigIssue(loc + ["name"], f"{lst.name!r} is already used by listeners[{seen_names[lst.name]}] (names must be unique)"))
        if lst.port in seen_ports:
            issues.append(ConfigIssue(loc + ["port"], f"{lst.port} is already used by listeners[{seen_ports[lst.port]}] (ports must be unique)"))
        if lst.port == 1880:
            issues.append(ConfigIssue(loc + ["port"], "1880 is reserved for the in-pod health listener (use another port)"))
        seen_names.setdefault(lst.name, i)
        seen_ports.setdefault(lst.port, i)
        if lst.require_certificate and not lst.tls:
            issues.append(ConfigIssue(loc + ["requireCertificate"], "true needs tls: true on the same listener"))
    if broker.ha.internal_port in seen_ports and estate.clustered:
        issues.append(ConfigIssue(["broker", "ha", "internalPort"],
                                  f"{broker.ha.internal_port} is already used by listeners[{seen_ports[broker.ha.internal_port]}] (use a free port)"))
    ha = broker.ha
    if ha.min_replicas and ha.max_replicas and ha.max_replicas < ha.min_replicas:
        issues.append(ConfigIssue(["broker", "ha", "maxReplicas"], f"{ha.max_replicas} is below minReplicas {ha.min_replicas}"))
    if broker.replicas and ha.min_replicas and broker.replicas != ha.min_replicas:
        issues.append(ConfigIssue(["broker", "replicas"], "conflicts with broker.ha.minReplicas (set only one)"))
    if estate.frontend_enabled and not any(lst.protocol == "mqtt" for lst in broker.listeners):
        issues.append(ConfigIssue(["frontend", "enabled"], "needs at least one listener with protocol: mqtt"))
    if estate.frontend.enabled is False and estate.clustered:
        issues.append(ConfigIssue(["frontend", "enabled"], "false is not allowed with more than one broker "
                                                           "(clients must reach the tier through the frontend)"))
    if broker.persistence.nfs and broker.persistence.storage_class:
        issues.append(ConfigIssue(["broker", "persistence", "storageClass"], "is not allowed with nfs (volumes are bound by name)"))
    exposed = (estate.frontend.service.type if estate.frontend_enabled else broker.service.type) == "LoadBalancer"
    if exposed and any(lst.tls for lst in broker.listeners) and not estate.pki.extra_dns_names:
        issues.append(ConfigIssue(["pki", "extraDnsNames"], "is required with a LoadBalancer: list the names clients use "
                                  "to reach it (TLS goes through to the brokers, whose certificate must carry them)"))
    mtls = any(lst.require_certificate for lst in broker.listeners)
    if broker.service.load_balancer_source_ranges and broker.service.type != "LoadBalancer":
        issues.append(ConfigIssue(["broker", "service", "loadBalancerSourceRanges"], "is only allowed with type: LoadBalancer"))
    zones = broker.acl.factory.zones if broker.acl.factory else None
    groups = broker.acl.sparkplug.groups if broker.acl.sparkplug else None
    seen_users: dict[str, int] = {}
    for i, user in enumerate(estate.users):
        loc = ["users", i]
        if user.name in seen_users:
            issues.append(ConfigIssue(loc + ["name"], f"{user.name!r} is already used by users[{seen_users[user.name]}] (names must be unique)"))
        seen_users.setdefault(user.name, i)
        if user.auth != "password" and not mtls:
            issues.append(ConfigIssue(loc + ["auth"], f"{user.auth!r} needs a listener with requireCertificate: true (or use password)"))
        if user.zone is not None:
            if zones is None:
                issues.append(ConfigIssue(loc + ["zone"], "needs broker.acl.factory to be set"))
            elif user.zone not in zones:
                issues.append(ConfigIssue(loc + ["zone"], f"{user.zone!r} is not allowed (use one of broker.acl.factory.zones: {', '.join(zones)})"))
        for j, group in enumerate(user.groups):
            if groups is None:
                issues.append(ConfigIssue(loc + ["groups", j], "needs broker.acl.sparkplug to be set"))
            elif group not in groups:
                issues.append(ConfigIssue(loc + ["groups", j], f"{group!r} is not allowed (use one of broker.acl.sparkplug.groups: {', '.join(groups)})"))
        if user.role == "edge-node" and not user.groups:
            issues.append(ConfigIssue(loc + ["groups"], "an edge-node needs at least one Sparkplug group"))
    for key in secret_keys:
        if key.startswith(SECRET_KEY_PREFIX) and key[len(SECRET_KEY_PREFIX):] not in seen_users:
            issues.append(ConfigIssue([key], f"names no user in users (known: {', '.join(seen_users) or 'none'})"))
    if estate.pki.existing_ca:
        for key in CA_SECRET_KEYS:
            if key not in secret_keys:
                issues.append(ConfigIssue(["pki", "existingCa"], f"true needs the secret key {PROJECT}:{key}"))
    return issues


def load_from_pulumi() -> tuple[Estate, pulumi.Config]:
    """Read the estate from the running Pulumi program's config (the program's entry point)."""
    config = pulumi.Config(PROJECT)
    values = {key: config.get_object(key) for key in TOP_LEVEL_KEYS if config.get(key) is not None}
    present = {}
    for key in CA_SECRET_KEYS:
        if config.get(key) is not None:
            present[key] = True
    estate = validate_estate(values, present, f"Pulumi.{pulumi.get_stack()}.yaml")
    return estate, config
