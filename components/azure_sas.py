"""Azure IoT Hub device credentials for the CloudBridge's `connection cloud`: MQTT user name, SAS token, thumbprint.

Computed here rather than with an Azure SDK because a render must be offline and byte-identical run to run:
the SAS algorithm is a documented HMAC over a string (stdlib only), and the token's expiry comes from
`renewal_expiry`, a function of the clock bucketed so that re-running `pulumi up` does not churn the Secret.
Only `thumbprint` needs `cryptography` (a project dependency already), imported where it is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import quote_plus

# "Communicate with an IoT hub using the MQTT protocol",
# https://learn.microsoft.com/en-us/azure/iot/iot-mqtt-connect-to-iot-hub (was .../iot-hub/iot-hub-mqtt-support),
# section "Use the MQTT protocol directly from a device" (earlier "Using the MQTT protocol directly (as a
# device)"): "For the Username field, use
# `{iotHub-hostname}/{device-id}/?api-version=2021-04-12`" ... "To avoid unexpected behavior, include
# api-version in the field." The ClientId is the device id and the Password is a SAS token (or none with X.509).
API_VERSION = "2021-04-12"

MIN_KEY_BYTES = 16
"""Shortest decoded signing key accepted (IoT Hub generates 32-byte keys; anything shorter is a typo)."""


def hub_host(hub_name: str) -> str:
    """The hub's full CName, e.g. `plant-hub` -> `plant-hub.azure-devices.net`."""
    return f"{hub_name}.azure-devices.net"


def username(hub_host: str, device_id: str, api_version: str = API_VERSION) -> str:
    """MQTT CONNECT user name as documented: `{iotHub-hostname}/{device-id}/?api-version={api-version}`."""
    return f"{hub_host}/{device_id}/?api-version={api_version}"


def resource_uri(hub_host: str, device_id: str) -> str:
    """Device-scoped SAS resource URI `{hub host}/devices/{device id}` (no scheme, not encoded)."""
    return f"{hub_host}/devices/{device_id}"


def key_problem(key_base64: object) -> str | None:
    """Why `key_base64` is not a usable device key, or None. The key is secret: the message never echoes it."""
    try:
        key = base64.b64decode(key_base64, validate=True)
    except (binascii.Error, TypeError, ValueError):
        return "Azure IoT Hub key is not valid base64 (use the device's primary or secondary key)"
    if len(key) < MIN_KEY_BYTES:
        return f"Azure IoT Hub key decodes to {len(key)} bytes; a device key is at least {MIN_KEY_BYTES}"
    return None


def sas_token(resource_uri: str, key_base64: str, expiry: int, policy_name: str | None = None) -> str:
    """`SharedAccessSignature sr=..&sig=..&se=..[&skn=..]` for `resource_uri`, valid until `expiry` (Unix seconds).

    Microsoft's algorithm ("Control access to IoT Hub with Shared Access Signatures",
    https://learn.microsoft.com/en-us/azure/iot-hub/iot-hub-dev-guide-sas, section
    "Security token structure"): "An HMAC-SHA256 signature string of the form: {URL-encoded-resourceURI} + "\\n"
    + expiry. Important: The key is decoded from base64 and used as key to perform the HMAC-SHA256
    computation." The URL-encoding is the doc's Python sample's (same page, Python tab): the string to sign
    uses `parse.quote_plus(uri)` and the token is `parse.urlencode(rawtoken)`, whose default quoting is
    `quote_plus` with no safe characters, so `/` -> `%2F`, `:` -> `%3A`, `@` -> `%40`, and the base64
    signature's `+ / =` are escaped too. Fields are in the sample's order: sr, sig, se, then skn only for a
    shared-access-policy token (a device's own key signs without it, per "Use a symmetric key in the identity
    registry"). The resource URI is not lower-cased (device ids are case-sensitive; the sample doesn't either).
    """
    if isinstance(expiry, bool) or not isinstance(expiry, int) or expiry <= 0:
        raise ValueError(f"SAS expiry must be a positive integer of Unix seconds, got {expiry!r}")
    problem = key_problem(key_base64)
    if problem:
        raise ValueError(problem)
    key = base64.b64decode(key_base64, validate=True)
    encoded_uri = quote_plus(resource_uri)
    to_sign = f"{encoded_uri}\n{expiry}".encode("utf-8")
    signature = base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode("ascii")
    token = f"SharedAccessSignature sr={encoded_uri}&sig={quote_plus(signature)}&se={expiry}"
    if policy_name is not None:
        token += f"&skn={quote_plus(policy_name)}"
    return token


def renewal_expiry(now: int, validity_seconds: int) -> int:
    """Token expiry for a render at `now`: the start of the current half-validity bucket plus the validity.

    Renders must be byte-identical run to run, so the expiry cannot be `now + validity`. Time is cut into
    buckets of `validity_seconds // 2`; every run inside one bucket gets the same expiry (hence the same token
    and an unchanged Secret), and at any run the token has more than validity/2 and at most validity left.
    So running `pulumi up` at least every validity/2 keeps the bridge connected: each run's token outlives
    the gap to the next run.

    A new token changes the `cloud.conf` Secret and rolls the bridge pod, once per bucket at most. A restart
    is the only way: mosquitto cannot reload bridge credentials. eclipse/mosquitto v2.0.20
    man/mosquitto.conf.5.xml:1574 (v2.0.11: line 1524), section "Configuring Bridges": "Bridges cannot
    currently be reloaded on reload signal."; src/conf.c:1761-1763 (v2.0.11: 1751-1753) skips
    `remote_password` on reload (`if(reload) continue; /* FIXME */`). IoT Hub itself drops a connection whose
    token expired (iot-hub-dev-guide-sas, "Create a token service...": "When the token expires, the IoT hub severs the
    device/module connection").
    """
    if isinstance(validity_seconds, bool) or not isinstance(validity_seconds, int) or validity_seconds < 2:
        raise ValueError(f"SAS validity must be at least 2 seconds, got {validity_seconds!r}")
    if isinstance(now, bool) or not isinstance(now, int) or now < 0:
        raise ValueError(f"now must be non-negative Unix seconds, got {now!r}")
    bucket = validity_seconds // 2
    return now - now % bucket + validity_seconds


def thumbprint(cert_pem: str) -> str:
    """SHA-256 of the certificate's DER, upper-case hex without colons, for IoT Hub's X.509 self-signed device.

    https://learn.microsoft.com/en-us/azure/iot-hub/tutorial-x509-self-sign, "Create a new IoT device": select
    "X.509 Self-Signed" and paste the two thumbprints, "Make sure that the hex strings have no colon
    delimiters." SHA-256 is what Microsoft's own tooling registers: the Azure IoT CLI extension v0.25.0
    release notes, "Deprecate use of SHA1 hashes for certificate thumbprints. SHA256 hashes will be used for
    all certificate thumbprints.", computing `cert.fingerprint(hashes.SHA256()).hex().upper()`
    (Azure/azure-iot-cli-extension azext_iot/common/certops.py). IoT Hub also still accepts a SHA-1
    thumbprint (40 hex digits; what the tutorial's plain `openssl x509 -fingerprint` printed), not used here.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("not a PEM X.509 certificate") from None
    return cert.fingerprint(hashes.SHA256()).hex().upper()
