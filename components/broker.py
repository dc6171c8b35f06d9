"""MosquittoBroker: a secure Eclipse Mosquitto 2.0 StatefulSet with its config, credentials and network rules.

Rollout model (what the real pulumi-kubernetes provider does with each piece; README "What happens on change"):
- mosquitto.conf lives in a ConfigMap whose name carries a content hash: a change creates a new ConfigMap,
  the pod template points at it and the StatefulSet rolls; nothing is replaced in place.
- password file, ACL and TLS material live in Secrets with fixed names, mounted as whole volumes so the kubelet
  rewrites the files in place. The Secrets update in place only when the kubernetes provider has
  `enableSecretMutable` (the stack config requires `kubernetes:enableSecretMutable: true`; a program of your own
  must set it on its provider): otherwise the provider replaces a changed Secret, deleting it first.
- users, passwords, ACLs and the server certificate are applied without a restart: the reloader sidecar sends
  mosquitto SIGHUP when the mounted files change (components/reloader_sidecar.py). What mosquitto does not reload
  (the CA, the bridges' client certificate) is hashed into pod-template annotations, so it rolls the pods. With
  `reloader: False` every one of these changes rolls the pods instead.
- volumeClaimTemplates cannot change (Kubernetes forbids it): changing size, class or NFS replaces the StatefulSet,
  with orphan deletion so the pods keep running and are adopted; existing claims keep their size (resize them).
  With an autoscaler the StatefulSet still names a replica count (the minimum) so a replacement never starts at 1.
- backups (components/backup_sidecar.py): a new `backup.restore.request` id is in the restore init container's
  environment, so it changes the pod template and rolls the pods one at a time, each restoring before mosquitto
  starts: intended, a restore is a restart. Leave the id in place afterwards (an id already done is not repeated);
  removing it rolls the pods once more, without a restore.
"""

import asyncio
from pathlib import Path
from typing import Mapping, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
from typing_extensions import Required

from .acl import render_acl
from .arguments import check_arguments
from .kube import (RESTRICTED_CONTAINER, ContainerResources, client_service, container_resources, content_hash,
                   labels, namespace_labels, restricted_pod, selector)
from .mosquitto_conf import (AUTH_DIR, BRIDGE_CERT_DIR, CERT_DIR, CONFIG_DIR, DATA_DIR, HEALTH_ACL,
                             HEALTH_PORT, HEALTH_TOPIC, RUN_DIR, START_SCRIPT, BrokerSettings,
                             ListenerSpec, render_bridge, render_mosquitto_conf)
from .names import INTERNAL_PORT_NAME, pod_dns_name, pod_dns_names  # noqa: F401 (public API)
from .credentials import SUPPLIED_ITERATIONS
from .password_logins import password_context, password_logins
from .passwords import password_file
from .client_bundles import COMPONENT as BUNDLE_COMPONENT
from .client_bundles import client_bundles
from .backup_sidecar import BrokerBackup, pod_backup
from .exporter_sidecar import ExporterSidecar, sidecar_parts
from .reloader_sidecar import SCRIPTS as RELOADER_SCRIPTS
from .reloader_sidecar import reloader_container
from .pki import ClientCertificate
from .users import AclRule, BrokerUser

APP = "mosquitto"
MOSQUITTO_UID = 1883
"""The eclipse-mosquitto image's own user and group (eclipse/mosquitto v2.0.20 docker/2.0/Dockerfile:75-76)."""
START = (Path(__file__).with_name("mosquitto_start.sh")).read_text()
SECRET_FILE_MODE = 0o440
"""Owner and group (fsGroup 1883) may read; nobody else (mosquitto warns about world-readable ACLs)."""
RESOURCES = {"cpu": ("1", "2"), "memory": ("1Gi", "2Gi")}
"""The broker container's default requests and limits (ContainerResources fills in each one it names)."""


class Autoscaling(TypedDict, total=False):
    """A CPU-based HorizontalPodAutoscaler for the broker StatefulSet."""

    min_replicas: Required[int]
    """Fewest brokers (also the StatefulSet's replica count, so a replaced StatefulSet starts with them)."""
    max_replicas: Required[int]
    """Most brokers; no autoscaler when it equals min_replicas."""
    target_cpu_percent: int
    """Average CPU utilisation the autoscaler aims at, in percent of the request (default 60)."""


class MosquittoBrokerArgs(TypedDict, total=False):
    namespace: str
    """Kubernetes namespace of every object (default mqtt)."""
    create_namespace: bool
    """Create the namespace, labelled for restricted pod security, with a default-deny NetworkPolicy (default
    True)."""
    image: str
    """eclipse-mosquitto image pinned to a 2.0.x tag or digest (default eclipse-mosquitto:2.0.20)."""
    replicas: int
    """Brokers to run (default 1); the autoscaler's minimum when autoscaling is set."""
    resources: ContainerResources
    """CPU and memory of the broker container."""
    storage_size: str
    """Size of each broker's data volume (default 20Gi)."""
    storage_class: Optional[str]
    """StorageClass of the data volumes (absent: the cluster default)."""
    settings: Required[BrokerSettings]
    """Listeners, limits and persistence as written into mosquitto.conf."""
    password_iterations: int
    """PBKDF2 iterations of the `$7$` hashes of supplied passwords (generated ones, 190 bits, use mosquitto's
    default 101: see components/credentials.py); 1000 to 100000, default 10000."""
    users: Sequence[BrokerUser]
    """Everyone who may log in: password users, certificate users (the CN is the name) and the bridge user."""
    acl_patterns: Sequence[AclRule]
    """ACL `pattern` lines for every user (topic filters may use %u and %c)."""
    factory_zones: Optional[Sequence[str]]
    """Factory-zone ACL template (absent: off)."""
    sparkplug: bool
    """Sparkplug B ACL template (default False)."""
    ca_cert_pem: Required[pulumi.Input[str]]
    """The CA certificate, PEM: clients' certificates are checked against it."""
    server_cert_pem: Required[pulumi.Input[str]]
    """The brokers' server certificate, PEM."""
    server_key_pem: Required[pulumi.Input[str]]
    """Its private key, PEM (secret)."""
    client_certificates: Mapping[str, ClientCertificate]
    """For handing to devices: grouped, many users per Opaque Secret (components/client_bundles.py)."""
    service_type: str
    """ClusterIP (default) or LoadBalancer."""
    load_balancer_source_ranges: Sequence[str]
    """CIDRs a LoadBalancer Service admits (empty: every source)."""
    max_replicas: int
    """Autoscaling maximum; with more than one broker the pods bridge into a star (see mosquitto_conf)."""
    autoscaling: Optional[Autoscaling]
    """CPU-based HorizontalPodAutoscaler (absent: fixed replicas)."""
    bridge_certificate: Optional[ClientCertificate]
    """Client certificate of the bridges (its CN needs `readwrite #` in the ACL)."""
    internal_clients: Sequence[Mapping[str, str]]
    """Pod selectors (besides the brokers) allowed to reach the internal listener, e.g. the frontend."""
    storage_volume_prefix: Optional[str]
    """Pre-provisioned volumes (NfsStorage): claims bind by name, so no storage class is used."""
    internal_listener: bool
    """Open the internal mTLS listener even with one broker (a frontend health-checks it); clustered: always."""
    exporter: Optional[ExporterSidecar]
    """A mosquitto-exporter sidecar in every broker pod (absent: none); MonitoringStack scrapes it."""
    reloader: bool
    """Apply changed users, passwords, ACLs and server certificates with a SIGHUP from a sidecar instead of rolling
    the pods (default True; the pod then shares its process namespace). False: every such change rolls them."""
    skip_await: bool
    """Do not wait for a LoadBalancer address (`pulumi.com/skipAwait`), for clusters without a load-balancer
    controller; otherwise `pulumi up` waits up to 10 minutes for one."""
    backup: Optional[BrokerBackup]
    """Backups of each broker's database to S3 by a sidecar, restore and corrupt-database recovery by an init
    container on the broker's data volume (absent: none; needs settings.persistence). A new restore.request id rolls
    the pods (module docstring)."""


def _exec_probe(period: int, failures: int) -> dict:
    command = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(HEALTH_PORT), "-t", HEALTH_TOPIC,
               "-C", "1", "-W", "4"]  # a random client id: probes never knock each other off
    return {"exec": {"command": command}, "periodSeconds": period, "timeoutSeconds": 5,
            "failureThreshold": failures}


def health_probes() -> dict:
    """Startup, readiness and liveness of a mosquitto container: a read of the uptime topic on its loopback health
    listener (broker and cloud-bridge pods alike)."""
    return {"startupProbe": _exec_probe(2, 30), "readinessProbe": _exec_probe(10, 3),
            "livenessProbe": _exec_probe(20, 3)}


class MosquittoBroker(pulumi.ComponentResource):
    """A secure Eclipse Mosquitto 2.0 StatefulSet with its config, credentials, TLS material, Services,
    PodDisruptionBudget and NetworkPolicies; with more than one broker the pods bridge into a star. Give it a
    kubernetes provider with enableSecretMutable true: changed Secrets are then updated in place instead of deleted
    and recreated (module docstring)."""

    namespace: str
    """The namespace of every object."""
    service_name: str
    """The Service clients connect to."""
    headless_service_name: str
    """The headless Service that names the broker pods."""
    credentials: pulumi.Output[Mapping[str, str]]
    """Every password user's password, supplied or generated (secret)."""
    endpoints: Mapping[str, str]
    """Each listener's in-cluster URL, by listener name."""

    def __init__(self, name: str, args: MosquittoBrokerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        check_arguments("MosquittoBroker", name, args, MosquittoBrokerArgs)
        super().__init__("mqtt-estate:index:MosquittoBroker", name, None, opts)
        ns = args.get("namespace", "mqtt")
        settings = args["settings"]
        listeners = settings["listeners"]
        users = list(args.get("users", ()))
        replicas = args.get("replicas", 1)
        sel = selector(APP, name)
        meta_labels = labels(APP, name, "broker")
        child = pulumi.ResourceOptions(parent=self)

        self.namespace_resource: Optional[k8s.core.v1.Namespace] = None
        """The Namespace when this component creates it: other components in it depend on it."""
        if args.get("create_namespace", True):
            namespace = self.namespace_resource = k8s.core.v1.Namespace(
                f"{name}-namespace", metadata={"name": ns, "labels": namespace_labels()}, opts=child)
            child = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
            k8s.networking.v1.NetworkPolicy(
                f"{name}-default-deny",
                metadata={"name": "default-deny", "namespace": ns, "labels": meta_labels},
                spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, opts=child)

        def meta(obj_name: str, component: str = "broker", **extra) -> dict:
            return {"name": obj_name, "namespace": ns, "labels": labels(APP, name, component), **extra}

        resources = container_resources(args.get("resources"), RESOURCES)
        backup = pod_backup(args.get("backup"), ns, resources["limits"]["memory"])
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=meta(name, **({"annotations": backup.account_annotations}
                                                 if backup.account_annotations else {})),
            automount_service_account_token=False, opts=child)

        # mosquitto.conf: a new ConfigMap per content, so a change rolls pods instead of being ignored.
        # A clustered broker gets one file per pod ordinal (each pod bridges to the ordinals below it).
        max_replicas = max(args.get("max_replicas", replicas), replicas)
        clustered = max_replicas > 1
        internal_port = settings.get("internal_port") if clustered or args.get("internal_listener") else None
        conf = render_mosquitto_conf({**settings, "internal_port": internal_port})
        if clustered:
            upstream = [f"{pod_dns_name(name, ns, i)}:{internal_port}" for i in range(max_replicas)]
            conf_files = {f"{name}-{i}.conf": conf + render_bridge(
                {"upstreams": upstream[:i], "client_id": f"{name}-{i}-bridge"}) for i in range(max_replicas)}
            conf_path = f"{CONFIG_DIR}/$(POD_NAME).conf"
        else:
            conf_files = {"mosquitto.conf": conf}
            conf_path = f"{CONFIG_DIR}/mosquitto.conf"
        reloads = args.get("reloader", True)
        scripts = {START_SCRIPT: START, **RELOADER_SCRIPTS}
        conf_hash = content_hash(*[f"{k}\0{v}" for k, v in sorted(conf_files.items())], HEALTH_ACL,
                                 *[f"{k}\0{v}" for k, v in sorted(scripts.items())])
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=meta(f"{name}-config-{conf_hash[:10]}"),
            data={**conf_files, "health.acl": HEALTH_ACL, **scripts}, opts=child)

        # Passwords: given as secrets, or generated; only their `$7$` hashes reach the cluster, each with the
        # iteration count its origin calls for (components/credentials.py).
        scope = f"{ns}/{name}"
        logins = password_logins(name, users, args.get("password_iterations", SUPPLIED_ITERATIONS),
                                 password_context(ns, name, args.get("factory_zones")), child)
        acl_rules = (args.get("acl_patterns", ()), args.get("factory_zones"), args.get("sparkplug", False))
        acl = render_acl(users, *acl_rules)
        # a listener that admits anonymous clients reads an ACL of its own: its anonymous rules, then the same
        # user blocks (mosquitto_conf._listener_block names the file `<listener>.acl`)
        listener_acls = {f"{lst['name']}.acl": render_acl(users, *acl_rules, anonymous=lst.get("anonymous_topics", ()))
                         for lst in listeners if lst.get("allow_anonymous") and not lst.get("require_certificate")}
        # PBKDF2 is slow on purpose: hash in a worker thread so several brokers' files are computed side by side
        # instead of holding up the event loop one after another.
        passwd = logins.entries.apply(lambda entries: asyncio.get_running_loop().run_in_executor(
            None, password_file, entries, scope))
        auth_secret = k8s.core.v1.Secret(
            f"{name}-auth", metadata=meta(f"{name}-auth", annotations=logins.annotations()), type="Opaque",
            string_data={"passwd": passwd, "acl": acl, **listener_acls}, opts=child)
        self.credentials = logins.passwords

        # the key changes with the certificate, so hashing the certificates alone rolls the pods and keeps every
        # byte derived from the private key out of annotations and state; with the reloader, only the CA (read
        # when a listener starts, never on SIGHUP) rolls them
        tls_bundle = pulumi.Output.all(args["ca_cert_pem"], *([] if reloads else [args["server_cert_pem"]]))
        tls_secret = k8s.core.v1.Secret(
            f"{name}-tls", metadata=meta(f"{name}-tls"), type="kubernetes.io/tls",
            string_data={"ca.crt": args["ca_cert_pem"], "tls.crt": args["server_cert_pem"],
                         "tls.key": pulumi.Output.secret(args["server_key_pem"])}, opts=child)
        tls_hash = pulumi.Output.unsecret(tls_bundle.apply(lambda parts: content_hash(*parts)))

        # devices' certificates and keys, for handing out: a few grouped Secrets that nothing mounts
        client_bundles(name, ns, labels(APP, name, BUNDLE_COMPONENT), args["ca_cert_pem"],
                       args.get("client_certificates", {}), child)

        ports = [{"name": lst["name"], "port": lst["port"], "targetPort": lst["name"], "protocol": "TCP"}
                 for lst in listeners]
        headless = f"{name}-headless"
        k8s.core.v1.Service(
            f"{name}-headless", metadata=meta(headless),
            spec={"clusterIP": "None", "publishNotReadyAddresses": True, "selector": sel, "ports": ports},
            opts=child)
        extra, service_spec = client_service(args.get("service_type", "ClusterIP"), sel, ports,
                                             args.get("load_balancer_source_ranges"), args.get("skip_await", False))
        k8s.core.v1.Service(f"{name}-service", metadata=meta(name, **extra), spec=service_spec, opts=child)

        container = {
            "name": APP,
            "image": args.get("image", "eclipse-mosquitto:2.0.20"),
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", f"{CONFIG_DIR}/{START_SCRIPT}", conf_path],
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "ports": [{"name": lst["name"], "containerPort": lst["port"], "protocol": "TCP"} for lst in listeners]
            + ([{"name": INTERNAL_PORT_NAME, "containerPort": internal_port, "protocol": "TCP"}] if internal_port else []),
            "resources": resources,
            "securityContext": RESTRICTED_CONTAINER,
            **health_probes(),
            "volumeMounts": [
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
                {"name": "certs", "mountPath": CERT_DIR, "readOnly": True},
                {"name": "data", "mountPath": DATA_DIR},
                {"name": "run", "mountPath": RUN_DIR},
            ],
        }
        volumes = [
            {"name": "config", "configMap": {"name": config_map.metadata["name"], "defaultMode": SECRET_FILE_MODE}},
            {"name": "auth", "secret": {"secretName": auth_secret.metadata["name"], "defaultMode": SECRET_FILE_MODE}},
            {"name": "certs", "secret": {"secretName": tls_secret.metadata["name"], "defaultMode": SECRET_FILE_MODE}},
            {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        ]
        bridge = args.get("bridge_certificate")
        if clustered and bridge is not None:
            bridge_secret = k8s.core.v1.Secret(
                f"{name}-bridge", metadata=meta(f"{name}-bridge"), type="kubernetes.io/tls",
                string_data={"ca.crt": args["ca_cert_pem"], "tls.crt": bridge["cert_pem"],
                             "tls.key": pulumi.Output.secret(bridge["key_pem"])}, opts=child)
            container["volumeMounts"].append({"name": "bridge", "mountPath": BRIDGE_CERT_DIR, "readOnly": True})
            volumes.append({"name": "bridge", "secret": {"secretName": bridge_secret.metadata["name"],
                                                         "defaultMode": SECRET_FILE_MODE}})
            tls_hash = pulumi.Output.unsecret(pulumi.Output.all(tls_hash, bridge["cert_pem"]).apply(
                lambda parts: content_hash(*parts)))
        claims = []
        if settings.get("persistence", True):
            claim_spec: dict = {"accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": args.get("storage_size", "20Gi")}}}
            if args.get("storage_volume_prefix"):
                claim_spec["storageClassName"] = ""  # bind to the pre-provisioned volume of this ordinal
            elif args.get("storage_class"):
                claim_spec["storageClassName"] = args["storage_class"]
            claims.append({"metadata": {"name": "data", "labels": sel}, "spec": claim_spec})
        else:
            volumes.append({"name": "data", "emptyDir": {}})

        sidecars, sidecar_volumes = sidecar_parts(
            args.get("exporter"),
            [(tls_secret.metadata["name"], {"server-certificate": "tls.crt", "ca-certificate": "ca.crt"})],
            SECRET_FILE_MODE)
        volumes += sidecar_volumes
        if reloads:
            sidecars.append(reloader_container(container["image"]))
            pod_annotations = {"mqtt-estate.io/config-hash": conf_hash, "mqtt-estate.io/tls-restart-hash": tls_hash}
        else:  # without the reloader every auth change must roll the pods: its hash goes into the template
            auth_hash = pulumi.Output.unsecret(passwd.apply(lambda text: content_hash(
                text, acl, *[f"{key}\0{value}" for key, value in sorted(listener_acls.items())])))
            pod_annotations = {"mqtt-estate.io/config-hash": conf_hash, "mqtt-estate.io/auth-hash": auth_hash,
                               "mqtt-estate.io/tls-hash": tls_hash}
        sidecars += backup.containers
        pod_annotations.update(backup.pod_annotations([container, *sidecars]))
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            # volumeClaimTemplates are immutable: a storage change makes Pulumi replace the StatefulSet. Orphaning
            # on delete keeps every pod (and its volume) running; the new StatefulSet adopts them and rolls them
            # one at a time instead of taking the whole tier down.
            metadata=meta(name, annotations={"pulumi.com/deletionPropagationPolicy": "orphan"}),
            spec={
                "serviceName": headless,
                # With an autoscaler the HPA owns the count: `spec.replicas` is ignored on update (see opts below),
                # but a replaced StatefulSet is created with the minimum instead of Kubernetes' default of 1.
                "replicas": replicas,
                "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "RollingUpdate"},
                "selector": {"matchLabels": sel},
                "template": {
                    "metadata": {"labels": meta_labels, "annotations": pod_annotations},
                    "spec": {
                        "serviceAccountName": account.metadata["name"],
                        "automountServiceAccountToken": False,
                        # the reloader (SIGHUP) and the backup sidecar (SIGUSR1) signal mosquitto: same user, one
                        # process namespace (no Pod Security Standard checks this field: sources in
                        # components/reloader_sidecar.py)
                        **({"shareProcessNamespace": True} if reloads or backup.containers else {}),
                        "securityContext": restricted_pod(MOSQUITTO_UID),
                        "terminationGracePeriodSeconds": 30,
                        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                                "labelSelector": {"matchLabels": sel}}}]}},
                        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                                       "whenUnsatisfiable": "ScheduleAnyway",
                                                       "labelSelector": {"matchLabels": sel}}],
                        # the restore init container works on the claim template's `data` volume, the one mosquitto
                        # mounts at DATA_DIR
                        **({"initContainers": backup.init_containers} if backup.init_containers else {}),
                        "containers": [container, *sidecars],
                        "volumes": volumes,
                    },
                },
                "volumeClaimTemplates": claims,
            },
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                ignore_changes=["spec.replicas"] if _autoscaled(args) else None)))

        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=meta(name),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": sel}}, opts=child)

        ingress = _client_ingress(listeners, args.get("internal_clients", ()))
        egress = [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]
        if internal_port:
            peers = [{"podSelector": {"matchLabels": sel}}]
            clients = peers + [{"podSelector": {"matchLabels": dict(s)}} for s in args.get("internal_clients", ())]
            ingress.append({"from": clients, "ports": [{"port": internal_port, "protocol": "TCP"}]})
            egress.append({"to": peers, "ports": [{"port": internal_port, "protocol": "TCP"}]})
        egress += backup.egress
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=meta(name),
            spec={"podSelector": {"matchLabels": sel}, "policyTypes": ["Ingress", "Egress"],
                  "ingress": ingress, "egress": egress},
            opts=child)

        scaling = args.get("autoscaling")
        if _autoscaled(args):
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa", metadata=meta(name),
                spec={"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name},
                      "minReplicas": scaling["min_replicas"], "maxReplicas": scaling["max_replicas"],
                      "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                          "type": "Utilization", "averageUtilization": scaling.get("target_cpu_percent", 60)}}}],
                      # scale down slowly: a removed broker disconnects its clients
                      "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600,
                                                 "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}}},
                opts=child)

        self.namespace = ns
        self.service_name = name
        self.headless_service_name = headless
        self.endpoints = {
            lst["name"]: f"{_scheme(lst)}://{name}.{ns}.svc.cluster.local:{lst['port']}" for lst in listeners}
        self.register_outputs({"service_name": name, "endpoints": self.endpoints, "credentials": self.credentials})


def _client_ingress(listeners: Sequence[ListenerSpec], internal_clients: Sequence[Mapping[str, str]]) -> list[dict]:
    """NetworkPolicy ingress rules for the client listeners.

    Behind a frontend, clients must come through it (its filtering, stickiness, maxconn and source check): one rule
    from its pods. Without one, a listener with source ranges gets a rule of its own whose peers are those
    networks, and the other listeners share one rule open to every source. (A rule with no ports admits every
    port, so the shared rule is left out when every listener has ranges.)"""

    def port(lst: ListenerSpec) -> dict:
        return {"port": lst["port"], "protocol": "TCP"}

    if internal_clients:
        return [{"ports": [port(lst) for lst in listeners],
                 "from": [{"podSelector": {"matchLabels": dict(s)}} for s in internal_clients]}]
    shared = [port(lst) for lst in listeners if not lst.get("source_ranges")]
    return ([{"ports": shared}] if shared else []) + [
        {"from": [{"ipBlock": {"cidr": cidr}} for cidr in lst["source_ranges"]], "ports": [port(lst)]}
        for lst in listeners if lst.get("source_ranges")]


def _autoscaled(args: MosquittoBrokerArgs) -> bool:
    scaling = args.get("autoscaling")
    return bool(scaling) and scaling["max_replicas"] > scaling["min_replicas"]


def _scheme(lst) -> str:
    base = "ws" if lst.get("protocol") == "websockets" else "mqtt"
    return base + ("s" if lst.get("tls") else "")

