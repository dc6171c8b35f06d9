"""What each cloud's MQTT endpoint accepts, written once: the config check, the component and the policy pack read
these numbers, and the local stand-ins are configured from them.

Values come from the providers' own documentation (cited beside each); a bridge that breaks one of them does not
fail loudly: AWS IoT Core and Azure IoT Hub close the connection, and mosquitto reconnects and tries again, forever.
"""

from dataclasses import dataclass
from typing import Optional

AWS = "aws-iot-core"
AZURE = "azure-iot-hub"
MQTT = "mqtt"
PROVIDERS = (AWS, AZURE, MQTT)
BRIDGE_APP = "mosquitto-cloud-bridge"
"""app.kubernetes.io/name of a CloudBridge's objects (here, not in cloud_bridge.py, so the policy pack can read it
without pulumi)."""
PROVIDER_LABEL = "mqtt-estate.io/cloud-provider"
"""On every object of a bridge: which provider profile the policy pack holds its files to."""


@dataclass(frozen=True)
class Profile:
    """One provider's limits as the bridge must respect them."""

    label: str
    max_qos: int
    max_payload: Optional[int]
    """Largest message the cloud takes, in bytes (the estate's maxPacketSize may not exceed it)."""
    max_topic_bytes: Optional[int]
    max_topic_slashes: Optional[int]
    keepalive: tuple[int, int]
    protocol_version: str
    retain: bool
    """Whether retained messages may be sent to the cloud."""
    try_private: bool
    """Whether the remote understands mosquitto's bridge flag (only another mosquitto does)."""


# AWS IoT Core quotas, https://docs.aws.amazon.com/general/latest/gr/iot-core.html ("AWS IoT Core message broker
# and protocol limits and quotas"): payload 128 KB, topic size 256 bytes of UTF-8, at most 7 forward slashes in a
# topic or topic filter, keep-alive 30 to 1200 seconds; MQTT 3.1.1 with QoS 0 and 1 only
# (https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html, "MQTT differences from the specification":
# "AWS IoT doesn't support publishing and subscribing with QoS 2").
# Retained messages need iot:RetainPublish besides iot:Publish; the bridge's least-privilege policy does not grant it,
# so retain flags are not forwarded (bridge_outgoing_retain false).
AWS_PROFILE = Profile(label="AWS IoT Core", max_qos=1, max_payload=128 * 1024, max_topic_bytes=256,
                      max_topic_slashes=7, keepalive=(30, 1200), protocol_version="mqttv311", retain=False,
                      try_private=False)
AWS_ALPN = "x-amzn-mqtt-ca"
"""ALPN protocol for X.509 client certificates on port 443 (https://docs.aws.amazon.com/iot/latest/developerguide/
protocols.html, "Protocols, port mappings, and authentication")."""
AWS_ALPN_PORT = 443
AWS_RESERVED_PREFIX = "$aws/"

# Azure IoT Hub, https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub ("Using the MQTT protocol
# directly (as a device)"): MQTT 3.1.1, QoS 0 and 1 ("IoT Hub doesn't support QoS 2 messages. If a device app
# publishes a message with QoS 2, IoT Hub closes the network connection."), retain not supported as such (IoT Hub
# adds an mqtt-retain application property), device-to-cloud messages up to 256 KB
# (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling, "Other limits"), keep-alive at
# most 1177 seconds ("Default keep-alive timeout": "the maximum keep-alive value is 1177 seconds").
AZURE_PROFILE = Profile(label="Azure IoT Hub", max_qos=1, max_payload=256 * 1024, max_topic_bytes=None,
                        max_topic_slashes=None, keepalive=(5, 1177), protocol_version="mqttv311", retain=False,
                        try_private=False)
AZURE_EVENTS = "devices/{device}/messages/events/"
"""Device-to-cloud topic; what follows it is the message's property bag (`key=value&...`)."""
AZURE_DEVICEBOUND = "devices/{device}/messages/devicebound/"
"""Cloud-to-device messages arrive under it; the device subscribes to `...devicebound/#`."""

MQTT_PROFILE = Profile(label="MQTT", max_qos=2, max_payload=None, max_topic_bytes=None, max_topic_slashes=None,
                       keepalive=(5, 65535), protocol_version="mqttv311", retain=True, try_private=False)

PROFILES = {AWS: AWS_PROFILE, AZURE: AZURE_PROFILE, MQTT: MQTT_PROFILE}


def azure_host(hub_name: str) -> str:
    return f"{hub_name}.azure-devices.net"


def azure_events_prefix(device_id: str) -> str:
    return AZURE_EVENTS.format(device=device_id)


def azure_devicebound_prefix(device_id: str) -> str:
    return AZURE_DEVICEBOUND.format(device=device_id)
