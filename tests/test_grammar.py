"""stacks.grammar: valid edge cases are accepted, realistic mistakes refused with a useful hint."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mqtt_estate.stacks import grammar as g  # noqa: E402

SHA = "0123456789abcdef" * 4  # 64 hex digits
MOSQ = "eclipse-mosquitto"


def refused(problem: str | None, value: object, *fragments: str) -> None:
    """A refusal starts with the quoted value (so it reads after a key path) and says why."""
    assert problem is not None, f"{value!r} was accepted"
    assert problem.startswith(repr(value)[:40].rstrip("'")[:30]), problem
    for fragment in fragments:
        assert fragment in problem, f"{fragment!r} not in {problem!r}"


# ---------------------------------------------------------------- messages

def test_long_values_are_truncated_in_messages():
    value = "sensors/" + "x" * 200 + "+"
    problem = g.topic_filter(value)
    assert problem is not None
    quoted = problem.split(" is not allowed")[0]
    assert quoted.endswith("...'") and len(quoted) <= 64


def test_non_text_is_refused_not_crashed():
    for check in (g.topic_filter, g.topic_name, g.dns_label, g.dns_subdomain, g.port_name,
                  g.cidr, g.image_reference, g.san_dns_name, g.ip_address, g.duration):
        assert "not text" in check(None)
    assert "not text" in g.quantity(512, "memory")
    assert g.parse_quantity(None) is None


# ---------------------------------------------------------------- topic filters

@pytest.mark.parametrize("value", [
    "#", "+", "/", "//", "a//b", "/leading", "trailing/", "sensors/#", "sensors/+/temperature",
    "+/+/#", "+/#", "sport/tennis/+", "a/+/b/+/c", "$SYS/#", "$SYS/broker/+",
    "halle 3/linie 2/temperatur",       # spaces inside a level are legal MQTT
    "werk/überwachung/°C", "工厂/传感器/#", "sensors/🌡",
    "$share/loggers/sensors/#", "$share/g/+", "$share/g/#",
    "%u", "a" * 1000, "/".join(["x"] * 201),
])
def test_topic_filter_accepts(value):
    assert g.topic_filter(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("factory/#/data", ["'#' may only be the last level", "factory/+/data"]),
    ("#/x", ["last level", "+/x"]),
    ("sensors/temp+", ["'+' must be a whole topic level", "sensors/temp/+"]),
    ("a+/b", ["'+' must be a whole topic level, as in a/+/b"]),
    ("+temp/x", ["+/temp/x"]),
    ("a/b+c/d", ["a/b/+/c/d"]),
    ("sensors#", ["'#' must be a whole topic level", "sensors/#"]),
    ("sensors/#temp", ["'#' must be a whole topic level"]),
    ("##", ["whole topic level"]),
    ("#/#", ["last level"]),
    ("sensors/# ", ["trailing whitespace", "'sensors/#'"]),
    (" sensors/#", ["leading or trailing whitespace"]),
    ("   ", ["blank"]),
    ("", ["empty"]),
    ("a\tb", ["control character U+0009", "position 1"]),
    ("sensors/temp\n", ["whitespace"]),
    ("a\x00b", ["U+0000"]),
    ("a\x7fb", ["U+007F"]),
    ("a\x85b", ["U+0085"]),
    ("a\ufffeb", ["non-character U+FFFE"]),
    ("a\ufdd0b", ["non-character U+FDD0"]),
    ("a\ud800b", ["surrogate"]),
    ("x" * 65536, ["65536 bytes", "at most 65535"]),
    ("é" * 32768, ["65536 bytes"]),
    ("/".join(["x"] * 202), ["202 levels", "mosquitto"]),
    ("$share/g", ["incomplete shared subscription", "§4.8.2"]),
    ("$share/g/", ["incomplete shared subscription"]),
    ("$share//sensors/#", ["empty share group"]),
    ("$share/g+/sensors", ["wildcard in its share group"]),
    ("$share/g/sensors/#/x", ["last level", "$share/g/sensors/+/x"]),
    ("$share/g/temp+", ["$share/g/temp/+"]),
])
def test_topic_filter_refuses(value, fragments):
    refused(g.topic_filter(value), value, *fragments)


def test_topic_filter_byte_limit_is_utf8_not_characters():
    assert g.topic_filter("é" * 32767) is None  # 65534 bytes
    assert g.topic_filter("x" * 65535) is None


# ---------------------------------------------------------------- ACL filters

@pytest.mark.parametrize("value", [
    "devices/%u/#", "devices/%c/#", "%u/status", "clients/%c", "%u", "%u/%c/+",
    "sensors/#", "$SYS/broker/#", "rate/100%/x", "a%/b",
])
def test_acl_filter_accepts(value):
    assert g.topic_filter_for_acl(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("$share/loggers/sensors/#", ["shared-subscription form", "write sensors/#"]),
    ("$share/g", ["shared-subscription form"]),
    ("devices/x%u", ["%u only when it is a whole topic level", "devices/%u/#"]),
    ("devices/%u-data/#", ["whole topic level"]),
    ("devices/%c%u", ["whole topic level"]),
    ("devices/%U/#", ["'%U'", "does not substitute", "%u = username"]),
    ("devices/%n/#", ["'%n'"]),
    ("factory/#/data", ["last level"]),
    ("devices/%u+", ["'+' must be a whole topic level"]),
])
def test_acl_filter_refuses(value, fragments):
    refused(g.topic_filter_for_acl(value), value, *fragments)


# ---------------------------------------------------------------- topic names

@pytest.mark.parametrize("value", [
    "sensors/line1/temperature", "/", "a//b", "halle 3/temp", "status", "x" * 65535,
])
def test_topic_name_accepts(value):
    assert g.topic_name(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("sensors/+/temp", ["wildcard", "only for subscriptions"]),
    ("sensors/#", ["wildcard"]),
    ("temp+", ["wildcard"]),
    ("$SYS/broker/uptime", ["reserved for the broker", "§4.7.2"]),
    ("$share/g/x", ["starts with '$'"]),
    ("", ["empty"]),
    ("status ", ["whitespace"]),
    ("a\x01", ["control character U+0001"]),
])
def test_topic_name_refuses(value, fragments):
    refused(g.topic_name(value), value, *fragments)


# ---------------------------------------------------------------- matching

@pytest.mark.parametrize("filter_, topic, expected", [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),                       # '#' matches the parent (§4.7.1.2)
    ("sport/#", "sports", False),
    ("#", "sport", True),
    ("#", "/", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),                      # '+' matches an empty level
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+", "finance", True),
    ("+/#", "a", True),
    ("+/+/#", "a", False),
    ("+/+/#", "a/b", True),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("a/b", "a/b/", False),
    ("Sensors/#", "sensors/x", False),                # case sensitive
    ("#", "$SYS/broker/uptime", False),              # §4.7.2
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$share/loggers/sensors/#", "sensors/line1", True),
    ("$share/loggers/#", "$SYS/x", False),
    ("halle 3/+", "halle 3/temp", True),
    ("halle 3/+", "halle3/temp", False),
])
def test_topic_matches(filter_, topic, expected):
    assert g.topic_matches(filter_, topic) is expected


@pytest.mark.parametrize("filter_, topic", [
    ("factory/#/data", "factory/x/data"),
    ("sensors/+", "sensors/+"),
    ("sensors/#", ""),
])
def test_topic_matches_rejects_invalid_input(filter_, topic):
    with pytest.raises(ValueError):
        g.topic_matches(filter_, topic)


@pytest.mark.parametrize("filter_, depth", [
    ("#", 1), ("+/#", 1), ("+/+/#", 2), ("+/+/+/#", 3), ("$share/g/#", 1), ("$share/g/+/+/#", 2),
    ("sensors/#", None), ("+", None), ("+/+", None), ("#/x", None), ("$SYS/#", None),
    ("+/sensors/#", None), ("", None),
])
def test_matches_everything_from_depth(filter_, depth):
    assert g.matches_everything_from_depth(filter_) == depth


@pytest.mark.parametrize("filter_, expected", [
    ("#", True), ("+/#", True), ("$share/loggers/#", True),
    ("+/+/#", False), ("sensors/#", False), ("+", False), ("$SYS/#", False), ("a+/#", False),
])
def test_is_catch_all(filter_, expected):
    assert g.is_catch_all(filter_) is expected


def test_catch_all_agrees_with_matching():
    topics = ["a", "a/b", "/", "a/b/c", "x//y", "line 1"]
    for filter_ in ("#", "+/#"):
        assert all(g.topic_matches(filter_, t) for t in topics)
    assert not g.topic_matches("+/+/#", "a")
    assert all(g.topic_matches("+/+/#", t) for t in topics if t.count("/") >= 1)


# ---------------------------------------------------------------- Kubernetes names

@pytest.mark.parametrize("value", ["mqtt", "a", "0", "123", "mqtt-broker-0", "a" * 63, "a-b-c", "a--b"])
def test_dns_label_accepts(value):
    assert g.dns_label(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("Mqtt", ["lower-case", "did you mean 'mqtt'"]),
    ("MQTT-Broker", ["did you mean 'mqtt-broker'"]),
    ("mqtt_broker", ["'_'"]),
    ("-mqtt", ["start and end"]),
    ("mqtt-", ["start and end"]),
    ("mqtt.broker", ["'.'"]),
    ("a" * 64, ["64 characters", "at most 63"]),
    ("", ["empty"]),
    ("mqtt broker", ["' '"]),
    ("brökér", ["'ö'"]),
])
def test_dns_label_refuses(value, fragments):
    refused(g.dns_label(value), value, *fragments)


def test_dns_label_custom_max_len():
    assert g.dns_label("a" * 40, max_len=40) is None
    refused(g.dns_label("a" * 41, max_len=40), "a" * 41, "at most 40")


@pytest.mark.parametrize("value", [
    "mqtt", "mqtt.plant.example", "a.b.c", "0.0.0.0", "x" * 253, ("a" * 63 + ".") * 3 + "a" * 61,
    "a" * 100 + ".b",  # apimachinery does not limit label length inside a subdomain
])
def test_dns_subdomain_accepts(value):
    assert g.dns_subdomain(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("mqtt..example", ["empty label"]),
    (".mqtt", ["empty label"]),
    ("mqtt.", ["empty label"]),
    ("Mqtt.Plant", ["did you mean 'mqtt.plant'"]),
    ("mqtt_x.plant", ["'_'"]),
    ("mqtt.-plant", ["start and end"]),
    ("x" * 254, ["254 characters", "at most 253"]),
    ("", ["empty"]),
])
def test_dns_subdomain_refuses(value, fragments):
    refused(g.dns_subdomain(value), value, *fragments)


@pytest.mark.parametrize("value", ["mqtt", "mqtts", "ws", "mqtt-ws", "metrics", "h2c", "a", "x" * 15, "8883-tls"])
def test_port_name_accepts(value):
    assert g.port_name(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("MQTT", ["lower-case", "'mqtt'"]),
    ("8883", ["no letter"]),
    ("mqtt--tls", ["'--'"]),
    ("-mqtt", ["begin or end"]),
    ("mqtt-", ["begin or end"]),
    ("mqtt_tls", ["only"]),
    ("mqtt.tls", ["only"]),
    ("mqtt-over-websockets", ["20 characters", "at most 15"]),
    ("", ["empty"]),
])
def test_port_name_refuses(value, fragments):
    refused(g.port_name(value), value, *fragments)


# ---------------------------------------------------------------- quantities

@pytest.mark.parametrize("value, expected", [
    ("1", Decimal(1)), ("0", Decimal(0)), ("+5", Decimal(5)), ("-1", Decimal(-1)),
    ("1.5", Decimal("1.5")), (".5", Decimal("0.5")), ("1.", Decimal(1)),
    ("100m", Decimal("0.1")), ("1n", Decimal("1e-9")), ("1u", Decimal("1e-6")),
    ("1k", Decimal(1000)), ("250M", Decimal(250_000_000)), ("1G", Decimal(10**9)),
    ("1T", Decimal(10**12)), ("1P", Decimal(10**15)), ("1E", Decimal(10**18)),
    ("1Ki", Decimal(1024)), ("1Mi", Decimal(2**20)), ("1.5Gi", Decimal(3 * 2**29)),
    ("1Ti", Decimal(2**40)), ("1Pi", Decimal(2**50)), ("2Ei", Decimal(2**61)),
    ("1e3", Decimal(1000)), ("1E3", Decimal(1000)), ("12e6", Decimal(12_000_000)),
    ("1e-3", Decimal("0.001")), ("1e+3", Decimal(1000)), ("1.5e1", Decimal(15)),
    ("0.1Ki", Decimal("102.4")), ("123456789012345678901234567890Ki", Decimal(123456789012345678901234567890 * 1024)),  # exact
])
def test_parse_quantity(value, expected):
    assert g.parse_quantity(value) == expected


@pytest.mark.parametrize("value", [
    "", " ", "Gi", "2Gb", "2GB", "2gi", "2K", "1e", "1e1.5", "1Ki5", "1..5", ".", "+", "1,5",
    "2 Gi", " 2Gi", "2Gi ", "1.5.5", "0x10", "1_000", "∞", "1mi", "1Kib", "e3", "1ee3",
])
def test_parse_quantity_refuses(value):
    assert g.parse_quantity(value) is None


@pytest.mark.parametrize("value, kind", [
    ("250M", "memory"), ("1.5Gi", "memory"), ("512Mi", "memory"), ("1Gi", "memory"),
    ("1e9", "memory"), ("1048576", "memory"), ("64Ki", "memory"), ("0.5Ki", "memory"),
    ("10Gi", "storage"), ("1Ti", "storage"), ("500M", "storage"),
    ("100m", "cpu"), ("1", "cpu"), ("1.5", "cpu"), ("0.001", "cpu"), ("1m", "cpu"),
    ("2", "cpu"), ("1e-3", "cpu"), ("250m", "cpu"), ("1000000u", "cpu"), ("64", "cpu"),
])
def test_quantity_accepts(value, kind):
    assert g.quantity(value, kind) is None


@pytest.mark.parametrize("value, kind, fragments", [
    ("2Gb", "memory", ["unknown suffix 'Gb'", "2Gi", "2G"]),
    ("2GB", "memory", ["2Gi"]),
    ("512MB", "memory", ["512Mi"]),
    ("2GiB", "memory", ["write 2Gi"]),
    ("2gi", "memory", ["case-sensitive", "2Gi"]),
    ("2K", "memory", ["lower-case k", "2Ki"]),
    ("100m", "memory", ["milli-bytes", "use Mi or Gi", "100Mi"]),
    ("500m", "storage", ["milli-bytes"]),
    ("1000m", "memory", ["milli-bytes"]),        # a whole byte, but surely meant 1000Mi
    ("5u", "memory", ["micro-bytes"]),
    ("0", "memory", ["zero"]),
    ("0Gi", "memory", ["zero"]),
    ("-1", "memory", ["negative"]),
    ("-512Mi", "memory", ["negative"]),
    ("512", "memory", ["512 bytes", "512Mi"]),
    ("1.0001Ki", "memory", ["not a whole number of bytes"]),
    ("0.5", "memory", ["not a whole number of bytes"]),
    ("2 Gi", "memory", ["whitespace", "write 2Gi"]),
    ("1,5Gi", "memory", ["decimal mark", "1.5Gi"]),
    ("", "memory", ["empty"]),
    ("lots", "memory", ["not a Kubernetes quantity"]),
    ("16Ei", "memory", ["too large"]),
    ("0.0001", "cpu", ["finer than 1m"]),
    ("0.5m", "cpu", ["finer than 1m"]),
    ("1500u", "cpu", ["finer than 1m"]),
    ("500M", "cpu", ["500,000,000 CPUs", "500m"]),
    ("2k", "cpu", ["2,000 CPUs"]),
    ("2Gi", "cpu", ["byte suffix 'Gi'"]),
    ("2 cores", "cpu", ["CPUs have no suffix"]),
    ("0", "cpu", ["zero"]),
    ("-100m", "cpu", ["negative"]),
    ("0m", "cpu", ["zero"]),
])
def test_quantity_refuses(value, kind, fragments):
    refused(g.quantity(value, kind), value, *fragments)


def test_quantity_rejects_unknown_kind():
    with pytest.raises(ValueError):
        g.quantity("1", "gpu")


# ---------------------------------------------------------------- CIDRs

@pytest.mark.parametrize("value", [
    "10.0.0.0/8", "10.20.0.0/16", "192.168.1.0/24", "192.168.1.7/32", "0.0.0.0/0",
    "::/0", "2001:db8::/32", "fd00::/8", "fd00::5/128", "::ffff:0:0/96", "100.64.0.0/10",
])
def test_cidr_accepts(value):
    assert g.cidr(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("10.0.0.0/33", ["prefix length 33", "0-32"]),
    ("fd00::/129", ["0-128"]),
    ("10.20.1.5/16", ["host bits set (did you mean 10.20.0.0/16", "10.20.1.5/32"]),
    ("fd00::1/64", ["fd00::/64"]),
    ("010.0.0.0/8", ["leading zero", "10.0.0.0/8"]),
    ("10.0.0.01/32", ["leading zero", "10.0.0.1/32"]),
    ("10.0.0.1", ["no prefix length", "10.0.0.1/32"]),
    ("fd00::5", ["fd00::5/128"]),
    ("10.0.0.0/255.0.0.0", ["prefix length", "10.0.0.0/8"]),
    ("10.0.0.0/08", ["leading zeros", "10.0.0.0/8"]),
    ("10.0.0.0/", ["prefix length"]),
    ("10.0.0/8", ["not an IPv4 or IPv6 address"]),
    ("256.0.0.0/8", ["not an IPv4 or IPv6 address"]),
    ("fe80::%eth0/64", ["zone"]),
    ("plant.example/24", ["not an IPv4 or IPv6 address"]),
    (" 10.0.0.0/8", ["whitespace"]),
    ("", ["empty"]),
    ("any", ["not a network"]),
])
def test_cidr_refuses(value, fragments):
    refused(g.cidr(value), value, *fragments)


@pytest.mark.parametrize("value, expected", [
    ("0.0.0.0/0", True), ("::/0", True), ("10.0.0.0/0", True), ("::ffff:0:0/96", True),
    ("::ffff:0.0.0.0/96", True), ("::/64", True),  # ::/64 contains every IPv4-mapped address
    ("0.0.0.0/1", False), ("10.0.0.0/8", False), ("::ffff:10.0.0.0/104", False),
    ("2001:db8::/32", False), ("garbage", False), ("", False),
])
def test_is_open_cidr(value, expected):
    assert g.is_open_cidr(value) is expected


# ---------------------------------------------------------------- images

@pytest.mark.parametrize("value", [
    f"{MOSQ}:2.0.20",
    f"{MOSQ}:2.0.20@sha256:{SHA}",
    f"{MOSQ}@sha256:{SHA}",
    f"{MOSQ}:latest@sha256:{SHA}",          # 'latest' is fine once a digest pins it
    "registry.plant.local:5000/eclipse-mosquitto:2.0.20",
    "registry.plant.local/ot/eclipse-mosquitto:2.0.20-openssl",
    "[::1]:5000/x:1",
    "localhost/mosquitto:2",
    "localhost:5000/mosquitto:2",
    "10.0.0.5:5000/mosquitto:2",
    "docker.io/library/eclipse-mosquitto:2.0.20",
    "Registry.Plant.Local:5000/eclipse-mosquitto:2.0.20",  # domains may be upper-case
    "library/eclipse-mosquitto:2.0",
    "my_org/my__image:v1", "a-b--c/x.y:TAG_1", "x:" + "a" * 128,
    f"x@sha512:{SHA}{SHA}", f"x@sha384:{SHA}{SHA[:32]}",
])
def test_image_reference_accepts(value):
    assert g.image_reference(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("Eclipse-Mosquitto:2.0", ["upper-case repository", "'eclipse-mosquitto:2.0'"]),
    ("Eclipse/mosquitto:2.0", ["upper-case repository", "registry host", "'eclipse/mosquitto:2.0'"]),
    ("registry.plant.local:5000/Eclipse-Mosquitto:2.0", ["upper-case repository"]),
    (MOSQ, ["not pinned", "pin a tag or digest"]),
    ("registry.plant.local:5000/eclipse-mosquitto", ["not pinned"]),
    (f"{MOSQ}:latest", ["'latest'", f"{MOSQ}:<version>"]),
    ("http://registry.plant.local/eclipse-mosquitto:2.0.20", ["URL scheme", "drop 'http://'"]),
    ("https://docker.io/eclipse-mosquitto:2", ["drop 'https://'"]),
    (f"{MOSQ} :2.0.20", ["whitespace"]),
    (f" {MOSQ}:2.0.20", ["whitespace"]),
    ("", ["empty"]),
    (f"{MOSQ}:", ["empty tag"]),
    (f"{MOSQ}:.1", ["invalid tag"]),
    (f"{MOSQ}:-rc1", ["invalid tag"]),
    ("x:" + "a" * 129, ["invalid tag"]),
    (f"{MOSQ}:2.0.20:latest", ["more than one ':'"]),
    ("registry.plant.local//mosquitto:2", ["empty path component"]),
    ("mosquitto/:2", ["empty path component"]),
    ("eclipse_-mosquitto:2", ["invalid path component"]),
    ("-mosquitto:2", ["invalid path component"]),
    ("eclipse___mosquitto:2", ["invalid path component"]),
    ("registry-.plant.local/x:2", ["invalid registry"]),
    (f"{MOSQ}@sha256:{SHA[:-1]}", ["63-digit sha256 digest", "64"]),
    (f"{MOSQ}@sha256:{SHA.upper()}", ["upper-case digest"]),
    (f"{MOSQ}@md5:{SHA}", ["digest algorithm 'md5'"]),
    (f"{MOSQ}@sha256:abc", ["invalid digest"]),
    (f"{MOSQ}@{SHA}", ["invalid digest"]),
    (f"sha256:{SHA}", ["bare digest"]),
    (SHA, ["bare image ID"]),
    ("r.io/" + "a" * 252 + ":1", ["at most 255"]),
])
def test_image_reference_refuses(value, fragments):
    refused(g.image_reference(value), value, *fragments)


@pytest.mark.parametrize("value, parts", [
    (f"{MOSQ}:2.0.20", (None, MOSQ, "2.0.20", None)),
    (f"{MOSQ}:2.0.20@sha256:{SHA}", (None, MOSQ, "2.0.20", f"sha256:{SHA}")),
    (f"{MOSQ}@sha256:{SHA}", (None, MOSQ, None, f"sha256:{SHA}")),
    ("registry.plant.local:5000/eclipse-mosquitto:2.0.20",
     ("registry.plant.local:5000", MOSQ, "2.0.20", None)),
    ("[::1]:5000/x:1", ("[::1]:5000", "x", "1", None)),
    ("localhost/ot/mosquitto:2", ("localhost", "ot/mosquitto", "2", None)),
    ("library/eclipse-mosquitto:2", (None, "library/eclipse-mosquitto", "2", None)),
    ("docker.io/library/eclipse-mosquitto:2", ("docker.io", "library/eclipse-mosquitto", "2", None)),
    (MOSQ, (None, MOSQ, None, None)),             # parses; image_reference refuses it as unpinned
    (f"{MOSQ}:latest", (None, MOSQ, "latest", None)),
])
def test_image_parts(value, parts):
    assert g.image_parts(value) == parts


def test_image_parts_raises_on_bad_grammar():
    with pytest.raises(ValueError, match="upper-case"):
        g.image_parts("Eclipse-Mosquitto:2.0")


# ---------------------------------------------------------------- certificate SANs

@pytest.mark.parametrize("value", [
    "mqtt.plant.example", "*.plant.example", "*.mqtt.plant.example", "localhost", "mosquitto",
    "MQTT.Plant.Example", "mqtt-0.mqtt-headless.ot.svc.cluster.local", "xn--bcher-kva.example",
    "1mqtt.example", "a" * 63 + ".example", "broker-01", ".".join(["a" * 63] * 3) + "." + "a" * 61,
])
def test_san_dns_name_accepts(value):
    assert g.san_dns_name(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("10.1.2.3", ["IP address", "use pki.extraIpAddresses for IP addresses"]),
    ("::1", ["use pki.extraIpAddresses"]),
    ("fd00::10", ["use pki.extraIpAddresses"]),
    ("[fd00::10]", ["use pki.extraIpAddresses"]),
    ("010.1.2.3", ["all-numeric", "pki.extraIpAddresses"]),
    ("10.1.2", ["all-numeric"]),
    ("mqtt.*.example", ["outside the left-most label", "*.plant.example"]),
    ("*.*.example.com", ["outside the left-most label"]),
    ("foo.*.example.com", ["outside the left-most label"]),
    ("a*.example.com", ["partial wildcard 'a*'"]),
    ("*a.example.com", ["partial wildcard"]),
    ("*.com", ["too broad", "two labels"]),
    ("*.local", ["too broad"]),
    ("*", ["too broad"]),
    ("mqtt.plant.example.", ["ends with '.'", "mqtt.plant.example"]),
    ("mqtt_broker.plant", ["'_'"]),
    ("-mqtt.plant", ["'-'"]),
    ("mqtt-.plant", ["'-'"]),
    ("mqtt..plant", ["empty label"]),
    (".mqtt", ["empty label"]),
    ("mqtt.plant.example:8883", ["port", "write mqtt.plant.example"]),
    ("mqtts://mqtt.plant.example:8883", ["URL", "mqtt.plant.example"]),
    ("bücher.example", ["not ASCII", "xn--bcher-kva.example"]),
    ("mqtt plant", ["whitespace"]),
    ("a" * 64 + ".example", ["64-character label"]),
    ("a." * 127 + "ab", ["at most 253"]),
    ("", ["empty"]),
    ("mqtt/plant", ["'/'"]),
])
def test_san_dns_name_refuses(value, fragments):
    refused(g.san_dns_name(value), value, *fragments)


@pytest.mark.parametrize("value", ["10.1.2.3", "0.0.0.0", "127.0.0.1", "::1", "fd00::10", "2001:db8::1", "::ffff:10.1.2.3"])
def test_ip_address_accepts(value):
    assert g.ip_address(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("010.1.2.3", ["leading zero", "10.1.2.3"]),
    ("10.1.2.3/32", ["network", "write 10.1.2.3"]),
    ("10.1.2.3:8883", ["port", "write 10.1.2.3"]),
    ("fe80::1%eth0", ["zone"]),
    ("[::1]", ["brackets"]),
    ("mqtt.plant.example", ["DNS name, not an IP address"]),
    ("10.1.2", ["not an IPv4 or IPv6 address"]),
    ("256.1.2.3", ["not an IPv4 or IPv6 address"]),
    (" 10.1.2.3", ["whitespace"]),
    ("", ["empty"]),
])
def test_ip_address_refuses(value, fragments):
    refused(g.ip_address(value), value, *fragments)


# ---------------------------------------------------------------- mosquitto durations

@pytest.mark.parametrize("value", ["1h", "12h", "14d", "2w", "6m", "1y", "68y", "0100d"])
def test_duration_accepts(value):
    assert g.duration(value) is None


@pytest.mark.parametrize("value, fragments", [
    ("2 days", ["spells out the unit", "write 2d"]),
    ("3weeks", ["write 3w"]),
    ("1 year", ["write 1y"]),
    ("30min", ["smallest is h"]),
    ("3600s", ["smallest is h"]),
    ("1M", ["upper-case unit"]),
    ("14D", ["upper-case unit"]),
    ("0d", ["zero", "positive"]),
    ("69y", ["too long", "68y"]),
    ("1.5d", ["not a mosquitto duration"]),
    ("-1d", ["not a mosquitto duration"]),
    ("14", ["not a mosquitto duration"]),
    ("d", ["not a mosquitto duration"]),
    ("14 d", ["whitespace", "write 14d"]),
    ("", ["empty"]),
])
def test_duration_refuses(value, fragments):
    refused(g.duration(value), value, *fragments)
