"""edge-site: one plant's MQTT broker, built from the mqtt-estate components directly (no typed stack config).

A line PLC publishes Sparkplug B with its client certificate on an mTLS listener; the SCADA host reads the line
and sends commands with a password over TLS; an operator (admin) has both, for the smoke suite and for break-glass
work. Every other client is refused: no anonymous access, nothing without TLS, and the broker's NetworkPolicy
admits only the plant's networks.
"""

import pulumi
import pulumi_kubernetes as k8s

from mqtt_estate import MosquittoBroker, MosquittoBrokerArgs, Pki, PkiArgs

config = pulumi.Config()
site = config.require("site")
namespace = config.require("namespace")
group = config.require("sparkplugGroup")
plc = config.require("plc")
plant_networks = config.require_object("plantNetworks")
storage_class = config.get("storageClass")  # None: the cluster's default

BROKER = "mosquitto"
OPERATOR, SCADA = "ops", "scada"
USERS = [
    {"name": plc, "role": "edge-node", "groups": [group], "password_login": False},  # its certificate only
    {"name": SCADA, "role": "host-application", "password_login": True},  # a password pulumi-random generates
    {"name": OPERATOR, "role": "admin", "password_login": True},  # a password and a certificate
]
CERTIFICATE_USERS = [plc, OPERATOR]


def login(user: dict) -> str:
    """How a user logs in: certificate, password or both."""
    certificate, password = user["name"] in CERTIFICATE_USERS, user["password_login"]
    return "both" if certificate and password else "certificate" if certificate else "password"


# Secrets (passwords, ACLs, certificates) must be updated in place, not deleted and recreated: a program of your
# own sets this on its kubernetes provider (see the MosquittoBroker docstring).
provider = k8s.Provider("k8s", enable_secret_mutable=True)

# The names clients use for the broker: its Service in every form, and its one pod (a StatefulSet with the
# headless Service `<broker>-headless`). The server certificate must carry each of them.
service = [BROKER, f"{BROKER}.{namespace}", f"{BROKER}.{namespace}.svc", f"{BROKER}.{namespace}.svc.cluster.local"]
pod = f"{BROKER}-0.{BROKER}-headless.{namespace}.svc.cluster.local"

pki_args: PkiArgs = {
    "organization": site,
    "server_common_name": f"{BROKER}.{namespace}.svc",
    "server_dns_names": service + [pod],
    # one client certificate per name: its CN is the MQTT user name (mTLS listeners use it as the identity)
    "client_names": CERTIFICATE_USERS,
}
pki = Pki(f"{site}-pki", pki_args)

broker_args: MosquittoBrokerArgs = {
    "namespace": namespace,
    "create_namespace": True,
    "image": "eclipse-mosquitto:2.0.20",
    "replicas": 1,
    "resources": {"cpu_request": "250m", "cpu_limit": "1", "memory_request": "256Mi", "memory_limit": "512Mi"},
    "storage_size": "5Gi",
    "storage_class": storage_class,
    "settings": {
        "listeners": [
            {"name": "mtls", "port": 8884, "tls": True, "tls_version": "tlsv1.3", "require_certificate": True,
             "source_ranges": plant_networks},
            {"name": "mqtts", "port": 8883, "tls": True, "tls_version": "tlsv1.2", "source_ranges": plant_networks},
        ],
        "persistence": True,
        "autosave_interval": 60,
        "session_expiry": "7d",
        "max_connections": 100,
        "max_queued_messages": 1000,
        "max_inflight_messages": 20,
        "max_packet_size": 1048576,
        "max_keepalive": 300,
    },
    "users": USERS,
    "sparkplug": True,
    "ca_cert_pem": pki.ca_cert_pem,
    "server_cert_pem": pki.server_cert_pem,
    "server_key_pem": pki.server_key_pem,
    # the PLC's and operator's certificates and keys, for handing out (a Secret nothing mounts)
    "client_certificates": pki.clients,
    "service_type": "LoadBalancer",
    "load_balancer_source_ranges": plant_networks,
}
broker = MosquittoBroker(BROKER, broker_args, opts=pulumi.ResourceOptions(providers=[provider]))

# What `python -m estate up --local --smoke` and `check` read (as the repository's own program exports them): the CA,
# the users with their roles and logins, and the generated passwords (a secret output).
pulumi.export("namespace", namespace)
pulumi.export("endpoints", broker.endpoints)
pulumi.export("caCertPem", pki.ca_cert_pem)
pulumi.export("users", [{"name": user["name"], "role": user["role"], "auth": login(user)} for user in USERS])
pulumi.export("credentials", broker.credentials)
