"""components/azure_sas.py: IoT Hub MQTT user name, SAS tokens against openssl and Microsoft's sample, renewal buckets,
thumbprints against openssl."""

from __future__ import annotations

import base64
import subprocess
from urllib.parse import unquote_plus

import pytest

from mqtt_estate.components import azure_sas

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # bytes 0x00..0x1f
HOST = "plant-hub.azure-devices.net"
DEVICE = "line-7:press@plant"
URI = f"{HOST}/devices/{DEVICE}"
EXPIRY = 1767225600  # 2026-01-01T00:00:00Z

# Computed once with openssl, not with the module:
#   printf 'plant-hub.azure-devices.net%%2Fdevices%%2Fline-7%%3Apress%%40plant\n1767225600' > sts.txt
#   openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f -binary sts.txt | openssl base64 -A
#   -> swb1PWurN5XS4ijTtUWMTA5CD0O+Y0qCC8GfJaOsln4=   ('+' -> %2B, '=' -> %3D by hand)
EXPECTED_TOKEN = ("SharedAccessSignature sr=plant-hub.azure-devices.net%2Fdevices%2Fline-7%3Apress%40plant"
                  "&sig=swb1PWurN5XS4ijTtUWMTA5CD0O%2BY0qCC8GfJaOsln4%3D&se=1767225600")


def doc_sample_generate_sas_token(uri, key, policy_name, ttl):
    """Microsoft's documented Python sample, transcribed (https://learn.microsoft.com/en-us/azure/iot-hub/
    iot-hub-dev-guide-sas, "Security token structure", Python tab); only `ttl = time() + expiry` became a
    parameter so the result is fixed, and the print is dropped."""
    from base64 import b64decode, b64encode
    from hashlib import sha256
    from hmac import HMAC
    from urllib import parse

    sign_key = "%s\n%d" % ((parse.quote_plus(uri)), int(ttl))
    signature = b64encode(HMAC(b64decode(key), sign_key.encode('utf-8'), sha256).digest())

    rawtoken = {
        'sr': uri,
        'sig': signature,
        'se': str(int(ttl))
    }

    if policy_name is not None:
        rawtoken['skn'] = policy_name

    return 'SharedAccessSignature ' + parse.urlencode(rawtoken)


def fields(token: str) -> dict[str, str]:
    prefix = "SharedAccessSignature "
    assert token.startswith(prefix)
    return dict(part.split("=", 1) for part in token[len(prefix):].split("&"))


def test_known_answer_token():
    """A fixed key/URI/expiry gives the token computed with openssl (see EXPECTED_TOKEN).

    Algorithm: "Control access to IoT Hub with Shared Access Signatures",
    https://learn.microsoft.com/en-us/azure/iot-hub/iot-hub-dev-guide-sas, section "Security token structure":
    HMAC-SHA256 of `{URL-encoded-resourceURI} + "\\n" + expiry` keyed with the base64-decoded key.
    """
    assert azure_sas.sas_token(URI, KEY, EXPIRY) == EXPECTED_TOKEN
    assert doc_sample_generate_sas_token(URI, KEY, None, EXPIRY) == EXPECTED_TOKEN
    assert azure_sas.sas_token(URI, KEY, EXPIRY, "device") == EXPECTED_TOKEN + "&skn=device"


# (resource URI, its URL-encoding written by hand as quote_plus does it)
OPENSSL_CASES = [
    (URI, "plant-hub.azure-devices.net%2Fdevices%2Fline-7%3Apress%40plant"),
    ("hub-a.azure-devices.net/devices/Press_01", "hub-a.azure-devices.net%2Fdevices%2FPress_01"),
    ("hub-a.azure-devices.net/devices/a=b$c(1)", "hub-a.azure-devices.net%2Fdevices%2Fa%3Db%24c%281%29"),
]
KEYS = [KEY, base64.b64encode(bytes(range(200, 248))).decode(), base64.b64encode(b"k" * 16).decode()]


@pytest.mark.parametrize("uri,encoded", OPENSSL_CASES)
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("expiry", [1, 1767225600, 4102444800])
def test_signature_matches_openssl_hmac(tmp_path, uri, encoded, key, expiry):
    """The sig field equals openssl's HMAC-SHA256 over the hand-written string to sign, base64 then URL-encoded
    by hand (Microsoft doc: https://learn.microsoft.com/en-us/azure/iot-hub/iot-hub-dev-guide-sas, "Security
    token structure")."""
    sts = tmp_path / "string-to-sign"
    sts.write_bytes(f"{encoded}\n{expiry}".encode())
    hexkey = base64.b64decode(key).hex()
    mac = subprocess.run(["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{hexkey}", "-binary",
                          str(sts)], check=True, capture_output=True).stdout
    assert len(mac) == 32
    sig = base64.b64encode(mac).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    token = azure_sas.sas_token(uri, key, expiry)
    assert token == f"SharedAccessSignature sr={encoded}&sig={sig}&se={expiry}"
    assert token == doc_sample_generate_sas_token(uri, key, None, expiry)


@pytest.mark.parametrize("device", [DEVICE, "MyDevice01", "a b", "x/y", "ü-sensor", "%41", "q?r&s=t#u"])
@pytest.mark.parametrize("policy", [None, "device"])
def test_matches_doc_sample_and_sr_decodes_back(device, policy):
    uri = azure_sas.resource_uri(HOST, device)
    token = azure_sas.sas_token(uri, KEY, EXPIRY, policy)
    assert token == doc_sample_generate_sas_token(uri, KEY, policy, EXPIRY)
    f = fields(token)
    assert unquote_plus(f["sr"]) == uri
    assert "/" not in f["sr"] and ":" not in f["sr"] and "@" not in f["sr"]
    assert f["se"] == str(EXPIRY)
    assert ("skn" in f) == (policy is not None)


def test_names():
    host = azure_sas.hub_host("plant-hub")
    assert host == HOST
    assert azure_sas.API_VERSION == "2021-04-12"
    assert azure_sas.username(host, DEVICE) == "plant-hub.azure-devices.net/line-7:press@plant/?api-version=2021-04-12"
    assert azure_sas.username("contoso.azure-devices.net", "MyDevice01", "2020-09-30") == \
        "contoso.azure-devices.net/MyDevice01/?api-version=2020-09-30"
    assert azure_sas.resource_uri(host, DEVICE) == URI


def test_policy_token_carries_skn_last():
    token = azure_sas.sas_token(URI, KEY, EXPIRY, policy_name="device")
    assert list(fields(token)) == ["sr", "sig", "se", "skn"]
    assert token.endswith("&skn=device")
    assert list(fields(azure_sas.sas_token(URI, KEY, EXPIRY))) == ["sr", "sig", "se"]
    # The policy name is not signed: same signature with and without it.
    assert fields(token)["sig"] == fields(azure_sas.sas_token(URI, KEY, EXPIRY))["sig"]


@pytest.mark.parametrize("key,message", [
    ("not base64!", "not valid base64"),
    ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "not valid base64"),  # padding missing
    ("AAEC AwQF", "not valid base64"),
    ("", "decodes to 0 bytes"),
    (base64.b64encode(b"12345678").decode(), "decodes to 8 bytes"),
    (base64.b64encode(b"x" * 15).decode(), "decodes to 15 bytes"),
])
def test_bad_keys_refused(key, message):
    with pytest.raises(ValueError) as err:
        azure_sas.sas_token(URI, key, EXPIRY)
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    if key:
        assert key not in text  # a key is a secret: never echoed


def test_sixteen_byte_key_accepted():
    assert azure_sas.sas_token(URI, base64.b64encode(b"x" * 16).decode(), EXPIRY).startswith("SharedAccessSignature ")


@pytest.mark.parametrize("expiry", [0, -1, True, 1.5, "1767225600"])
def test_bad_expiry_refused(expiry):
    with pytest.raises(ValueError, match="SAS expiry must be a positive integer") as err:
        azure_sas.sas_token(URI, KEY, expiry)
    assert "\n" not in str(err.value)


DAY = 86400


@pytest.mark.parametrize("validity", [2, 3, 3600, 7 * DAY, 30 * DAY, 30 * DAY + 1])
def test_renewal_expiry_window(validity):
    half = validity // 2
    base = 1767225600 - 1767225600 % half  # a bucket start
    for now in list(range(base - 3, base + 4)) + [base + half - 1, base + half, 1767225601, 1800000000]:
        expiry = azure_sas.renewal_expiry(now, validity)
        remaining = expiry - now
        assert validity / 2 < remaining <= validity, (now, expiry)


def test_renewal_expiry_same_bucket_same_token():
    validity = 30 * DAY
    start = 1767225600 - 1767225600 % (15 * DAY)
    runs = (start, start + 1, start + DAY, start + 15 * DAY - 1)
    expiries = {azure_sas.renewal_expiry(now, validity) for now in runs}
    assert expiries == {start + validity}
    tokens = {azure_sas.sas_token(URI, KEY, e) for e in expiries}
    assert len(tokens) == 1


def test_renewal_expiry_changes_at_bucket_boundary():
    validity = 30 * DAY
    start = 1767225600 - 1767225600 % (15 * DAY)
    boundary = start + 15 * DAY
    before = azure_sas.renewal_expiry(boundary - 1, validity)
    after = azure_sas.renewal_expiry(boundary, validity)
    assert after == before + 15 * DAY
    assert azure_sas.sas_token(URI, KEY, before) != azure_sas.sas_token(URI, KEY, after)


def test_runs_every_half_validity_never_see_an_expired_token():
    """`pulumi up` every validity/2: the token of each run is still valid at the next run."""
    validity = 7 * DAY
    now = 1767225600 + 12345
    for _ in range(40):
        expiry = azure_sas.renewal_expiry(now, validity)
        now += validity // 2
        assert expiry > now


@pytest.mark.parametrize("now,validity", [(0, 1), (0, 0), (100, -10), (-1, 3600), (1.5, 3600), (100, True)])
def test_renewal_expiry_refuses_nonsense(now, validity):
    with pytest.raises(ValueError):
        azure_sas.renewal_expiry(now, validity)


@pytest.mark.parametrize("algorithm", [["-newkey", "rsa:2048"],
                                       ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]])
def test_thumbprint_matches_openssl(tmp_path, algorithm):
    key, cert = tmp_path / "device.key", tmp_path / "device.crt"
    subprocess.run(["openssl", "req", "-x509", *algorithm, "-nodes", "-days", "30", "-subj", f"/CN={DEVICE}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
                         check=True, capture_output=True, text=True).stdout.strip()
    expected = out.split("=", 1)[1].replace(":", "").upper()
    got = azure_sas.thumbprint(cert.read_text())
    assert got == expected
    assert len(got) == 64 and got == got.upper() and ":" not in got


def test_thumbprint_refuses_non_certificate():
    with pytest.raises(ValueError, match="not a PEM X.509 certificate"):
        azure_sas.thumbprint("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
