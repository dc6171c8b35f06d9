"""NfsStorage: one static PersistentVolume per broker ordinal on an existing NFS export (the Cedalo layout).

Each volume is pre-bound (claimRef) to the claim the StatefulSet's volumeClaimTemplate makes for that
ordinal, so two brokers can never share a persistence path: mosquitto takes no lock on mosquitto.db and two
live brokers on one file overwrite each other. Mounts are `hard` (a `soft` mount turns an NFS hiccup into a
corrupt database) and volumes are Retained when claims go away.
The directories `<path>/<statefulset>-<ordinal>` must exist on the export.
"""

from typing import Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
from typing_extensions import Required

from .arguments import check_arguments
from .kube import labels


class NfsStorageArgs(TypedDict, total=False):
    server: Required[str]
    """NFS server host name or IP."""
    path: Required[str]
    """Export path; each ordinal uses the sub-directory `<statefulset>-<ordinal>`."""
    version: str
    """nfsvers mount option: 3, 4, 4.1 (default) or 4.2."""
    namespace: Required[str]
    """Namespace of the broker StatefulSet whose claims the volumes bind to."""
    statefulset: Required[str]
    """Name of the StatefulSet whose claims (`<claim>-<statefulset>-<ordinal>`) the volumes bind to."""
    claim_template: str
    """Name of the StatefulSet's volumeClaimTemplate (default `data`)."""
    count: Required[int]
    """How many ordinals get a volume: the autoscaling maximum."""
    size: str
    """Capacity of each volume (default 20Gi)."""


class NfsStorage(pulumi.ComponentResource):
    """One Retained PersistentVolume per broker ordinal on an existing NFS export, each pre-bound to the claim of
    that ordinal, mounted `hard`."""

    volume_names: Sequence[str]
    """The PersistentVolumes' names, by ordinal."""

    def __init__(self, name: str, args: NfsStorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        check_arguments("NfsStorage", name, args, NfsStorageArgs)
        super().__init__("mqtt-estate:index:NfsStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        sts, ns = args["statefulset"], args["namespace"]
        claim = args.get("claim_template", "data")
        volume_names: list[str] = []
        for ordinal in range(args["count"]):
            volume = f"{ns}-{sts}-{ordinal}"
            k8s.core.v1.PersistentVolume(
                f"{name}-pv-{ordinal}",
                metadata={"name": volume, "labels": labels("mosquitto", sts, "storage")},
                spec={
                    "capacity": {"storage": args.get("size", "20Gi")},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "mountOptions": ["hard", f"nfsvers={args.get('version', '4.1')}", "timeo=600", "retrans=2"],
                    "nfs": {"server": args["server"], "path": f"{args['path'].rstrip('/')}/{sts}-{ordinal}"},
                    "claimRef": {"namespace": ns, "name": f"{claim}-{sts}-{ordinal}"},
                },
                opts=child)
            volume_names.append(volume)
        self.volume_names = volume_names
        self.register_outputs({"volume_names": self.volume_names})
