"""The mqtt-estate Pulumi program: typed stack config -> PKI -> a secure Mosquitto broker on Kubernetes."""

import pulumi

from mqtt_estate.stacks.build import build_estate
from mqtt_estate.stacks.load import load_from_pulumi

estate, config = load_from_pulumi()
resources = build_estate(estate, config.get_secret)

pulumi.export("namespace", estate.namespace.name)
pulumi.export("endpoints", resources.endpoints)
pulumi.export("caCertPem", resources.pki.ca_cert_pem)
pulumi.export("users", [{"name": u.name, "role": u.role, "auth": u.auth} for u in estate.users])
pulumi.export("credentials", resources.broker.credentials)
pulumi.export("bridges", {name: {"endpoint": bridge.endpoint, "certificateThumbprint": bridge.certificate_thumbprint,
                                 "sasTokenExpiresAt": bridge.sas_token_expires_at}
                          for name, bridge in resources.bridges.items()})
