"""Kubernetes objects and pod files from what the program registered: kubectl-appliable YAML, one file each."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Iterable

import yaml

from .engine import Registered, Registry
from .output import write_file

APPLY_ORDER = {"Namespace": 0, "ServiceAccount": 10, "Secret": 20, "ConfigMap": 20, "PersistentVolume": 25,
               "PersistentVolumeClaim": 26, "Service": 30, "StatefulSet": 40, "Deployment": 40,
               "PodDisruptionBudget": 50, "NetworkPolicy": 50, "HorizontalPodAutoscaler": 60}


def _clean(value):
    """Drop None values and sort mapping keys, so output is stable and free of provider placeholders."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def kubernetes_object(resource: Registered) -> dict:
    body = _clean(resource.inputs)
    head = {"apiVersion": body.pop("apiVersion"), "kind": body.pop("kind"), "metadata": body.pop("metadata")}
    return {**head, **body}


def kubernetes_objects(registry: Registry) -> list[dict]:
    objects = [kubernetes_object(r) for r in registry.of_type("kubernetes:") if r.custom]
    return sorted(objects, key=lambda o: (APPLY_ORDER.get(o["kind"], 90), o["kind"],
                                          o["metadata"].get("namespace", ""), o["metadata"]["name"]))


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """libyaml's emitter when present (6x faster, same bytes), else PyYAML's own."""


def _str(dumper, data: str):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(obj: dict) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def manifest_name(obj: dict) -> str:
    return f"{APPLY_ORDER.get(obj['kind'], 90):02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def write_manifests(objects: Iterable[dict], out: Path) -> list[Path]:
    paths = []
    for obj in objects:
        path = out / manifest_name(obj)
        write_file(path, to_yaml(obj), secret=obj["kind"] == "Secret")
        paths.append(path)
    return paths


def object_data(obj: dict) -> dict[str, str]:
    """The files a ConfigMap or Secret projects into a volume."""
    data = dict(obj.get("data") or {})
    if obj["kind"] == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        data.update(obj.get("stringData") or {})
    return data


def object_index(objects: list[dict]) -> dict[tuple, dict]:
    """(kind, namespace, name) -> object, built once for all workloads."""
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}


def pod_files(objects: list[dict] | dict[tuple, dict], workload: dict) -> dict[str, tuple[str, bool]]:
    """mountPath/key -> (content, is_secret) for every ConfigMap and Secret volume of a workload's pods.

    `objects` is the object list or, when called for many workloads, its `object_index`."""
    by_ref = objects if isinstance(objects, dict) else object_index(objects)
    namespace = workload["metadata"].get("namespace")
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files: dict[str, tuple[str, bool]] = {}
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            if "configMap" in volume:
                source, kind, ref = volume["configMap"], "ConfigMap", volume["configMap"]["name"]
            elif "secret" in volume:
                source, kind, ref = volume["secret"], "Secret", volume["secret"]["secretName"]
            else:
                continue
            obj = by_ref[(kind, namespace, ref)]
            data = object_data(obj)
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = (data[item["key"]], kind == "Secret")
    return files


def workloads(objects: list[dict], kinds=("StatefulSet",)) -> list[dict]:
    return [o for o in objects if o["kind"] in kinds]
