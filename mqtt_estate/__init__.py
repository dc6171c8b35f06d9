"""mqtt-estate: Pulumi components for a production Eclipse Mosquitto MQTT estate on Kubernetes.

The public API is the component classes and their argument types:

    from mqtt_estate import MosquittoBroker, HaProxyFrontend, NfsStorage, Pki

Everything else (`mqtt_estate.stacks`: the typed stack configuration; `mqtt_estate.estate`: the offline engine and
CLI; `mqtt_estate.policy`: the CrossGuard pack) is importable but may change between minor versions.

The components are loaded on first use (PEP 562), so `import mqtt_estate.stacks` or the CLI's config check do
not pay for importing pulumi-kubernetes.

In a wheel, setuptools' package-dir (pyproject.toml) puts the repository's components/, stacks/, estate/,
policy/, exporter/ and backup/ folders under this package. In a source checkout they stay at the repository root,
beside this folder: `_map_checkout` registers exactly those (SUBPACKAGES) as this package's subpackages, so the Pulumi program, the CrossGuard
pack, the provider and the tests all run from the checkout without installing it, and nothing else at the root
(tests/, bench/, the program's own __main__.py) becomes part of the package.
"""

import sys
from importlib import import_module
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from typing import TYPE_CHECKING, Optional

__version__ = "0.1.0"
"""The one place the version is written: pyproject.toml reads it from here, and so does the provider's schema."""

SUBPACKAGES = ("components", "stacks", "estate", "policy", "exporter", "backup")


def _checkout() -> Optional[Path]:
    """The source checkout this package runs from (its root: Pulumi.yaml, __main__.py, components/ ...), or None
    when it is installed (a wheel holds the subpackages as real folders, and no program)."""
    here = Path(__file__).resolve().parent
    if (here / "components").is_dir() or not (here.parent / "components" / "broker.py").is_file():
        return None
    return here.parent


CHECKOUT = _checkout()


def _map_checkout(checkout: Optional[Path]) -> None:
    if checkout is None:
        return  # installed: the subpackages are real folders of this one
    for sub in SUBPACKAGES:
        folder = checkout / sub
        spec = spec_from_file_location(f"{__name__}.{sub}", folder / "__init__.py",
                                       submodule_search_locations=[str(folder)])
        module = module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        globals()[sub] = module


_map_checkout(CHECKOUT)

PUBLIC = {
    "MosquittoBroker": "components.broker",
    "MosquittoBrokerArgs": "components.broker",
    "HaProxyFrontend": "components.haproxy",
    "HaProxyFrontendArgs": "components.haproxy",
    "NfsStorage": "components.nfs",
    "NfsStorageArgs": "components.nfs",
    "Pki": "components.pki",
    "PkiArgs": "components.pki",
    "CloudBridge": "components.cloud_bridge",
    "CloudBridgeArgs": "components.cloud_bridge",
    "MonitoringStack": "components.monitoring",
    "MonitoringStackArgs": "components.monitoring",
    "MonitoredBridge": "components.monitoring",
    "MonitoredFrontend": "components.monitoring",
    "ExporterSidecar": "components.exporter_sidecar",
    "BackupBucket": "components.backup_bucket",
    "BackupBucketArgs": "components.backup_bucket",
    "BrokerBackup": "components.backup_sidecar",
    # the argument types inside those (TypedDicts: plain dicts at run time; the provider schema's types)
    "AclRule": "components.users",
    "BackupCredentials": "components.backup_sidecar",
    "BackupLock": "components.backup_sidecar",
    "BackupRestore": "components.backup_sidecar",
    "BackupStore": "components.backup_sidecar",
    "AwsIotArgs": "components.cloud_bridge",
    "AzureIotArgs": "components.cloud_bridge",
    "BridgeMapping": "components.bridge_conf",
    "BufferLimits": "components.bridge_conf",
    "MqttRemoteArgs": "components.cloud_bridge",
    "Autoscaling": "components.broker",
    "BrokerSettings": "components.mosquitto_conf",
    "BrokerUser": "components.users",
    "ClientCertificate": "components.pki",
    "ContainerResources": "components.kube",
    "FloodLimits": "components.haproxy_cfg",
    "FrontendPort": "components.haproxy_cfg",
    "KeySpec": "components.pki",
    "ListenerSpec": "components.mosquitto_conf",
    # what a component raises for invalid args (a ValueError), before it registers anything
    "ComponentArgumentsError": "components.arguments",
}
"""Public name -> the module (under this package) that defines it."""

__all__ = sorted(PUBLIC)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ below loads them
    from .components.arguments import ComponentArgumentsError
    from .components.backup_bucket import BackupBucket, BackupBucketArgs
    from .components.backup_sidecar import (BackupCredentials, BackupLock, BackupRestore, BackupStore,
                                            BrokerBackup)
    from .components.broker import Autoscaling, MosquittoBroker, MosquittoBrokerArgs
    from .components.haproxy import HaProxyFrontend, HaProxyFrontendArgs
    from .components.haproxy_cfg import FloodLimits, FrontendPort
    from .components.kube import ContainerResources
    from .components.mosquitto_conf import BrokerSettings, ListenerSpec
    from .components.nfs import NfsStorage, NfsStorageArgs
    from .components.pki import ClientCertificate, KeySpec, Pki, PkiArgs
    from .components.users import AclRule, BrokerUser


def __getattr__(name: str):
    module = PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'mqtt_estate' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(PUBLIC))
