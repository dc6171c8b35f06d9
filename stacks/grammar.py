"""Validators for the value grammars an MQTT estate is configured with.

Every validator returns ``None`` for a valid value, else one short sentence
that starts with the quoted value and says what is wrong and what is
allowed, so a caller can put a key path in front of it::

    f"{path}: {problem}"   # pki.dnsNames[2]: '10.1.2.3' is an IP address (...)

Each function follows a published grammar (cited in its docstring), not an
approximation of it.  Where configuration is stricter than the grammar (a
``SHOULD NOT`` of a spec, an unpinned image) the message says so.  Standard
library only.
"""
from __future__ import annotations

import datetime
import decimal
import ipaddress
import re
from decimal import Decimal

__all__ = [
    "topic_filter", "topic_filter_for_acl", "topic_name", "topic_matches",
    "matches_everything_from_depth", "is_catch_all",
    "dns_label", "dns_1035_label", "dns_subdomain", "port_name", "label_key", "label_value", "config_map_key",
    "parse_quantity", "quantity",
    "cidr", "is_open_cidr",
    "image_reference", "image_parts",
    "san_dns_name", "ip_address", "host_name",
    "duration", "rfc3339_time",
    "Pattern", "USER_NAME", "GROUP_ID", "SHORT_NAME", "NFS_PATH", "PRINTABLE_64", "matches",
]

_SHOWN = 60


def _q(value: object) -> str:
    """repr() of a value for a message, shortened to about 60 characters."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
    if len(value) > _SHOWN:
        value = value[: _SHOWN - 3] + "..."
    return repr(value)


quoted = _q
"""The same, for callers that put a value in a message of their own."""


def _not_text(value: object, example: str) -> str:
    return f"{_q(value)} is not text (expected a string such as {example})"


# --------------------------------------------------------------------------
# MQTT topics
# --------------------------------------------------------------------------

_MQTT_MAX_BYTES = 65535          # MQTT 5.0 §1.5.4 / §4.7.3
_MOSQUITTO_MAX_SEPARATORS = 200  # mosquitto TOPIC_HIERARCHY_LIMIT ('/' count)
_SHARE = "$share/"


def _mqtt_char_problem(char: str) -> str | None:
    """Which MQTT 5.0 §1.5.4 rule a character breaks (mosquitto_validate_utf8)."""
    code = ord(char)
    if code == 0:
        return "U+0000 (NUL)"
    if 0xD800 <= code <= 0xDFFF:
        return f"the lone surrogate U+{code:04X} (not valid UTF-8)"
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"the control character U+{code:04X}"
    if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
        return f"the Unicode non-character U+{code:04X}"
    return None


_MQTT_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + "".join(
    f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17)) + "]")
"""Every character _mqtt_char_problem refuses, so a valid topic is scanned in C, not character by character."""


def _mqtt_text_problem(value: object, what: str, example: str) -> str | None:
    """Rules shared by topic names and filters: MQTT 5.0 §1.5.4, §4.7.3."""
    if not isinstance(value, str):
        return _not_text(value, example)
    if value == "":
        return f"'' is empty (an MQTT {what} needs at least one character, e.g. {example})"
    if not value.strip():
        return f"{_q(value)} is blank (an MQTT {what} needs visible characters, e.g. {example})"
    if value != value.strip():
        return (f"{_q(value)} has leading or trailing whitespace (MQTT keeps spaces as "
                f"part of the topic, so it would not match {_q(value.strip())}; remove it)")
    found = _MQTT_BAD_CHARS.search(value)
    if found:
        return (f"{_q(value)} contains {_mqtt_char_problem(found.group())} at position {found.start()} (not "
                f"allowed in an MQTT {what}: MQTT 5.0 §1.5.4, and mosquitto refuses it)")
    size = len(value.encode("utf-8"))
    if size > _MQTT_MAX_BYTES:
        return f"{_q(value)} is {size} bytes in UTF-8 (an MQTT {what} is at most 65535 bytes)"
    if value.count("/") > _MOSQUITTO_MAX_SEPARATORS:
        return (f"{_q(value)} has {value.count('/') + 1} levels (mosquitto refuses topics "
                f"with more than {_MOSQUITTO_MAX_SEPARATORS + 1} levels)")
    return None


def _split_plus(level: str) -> str:
    """'temp+' -> 'temp/+': the level the writer probably meant."""
    pieces: list[str] = []
    for index, part in enumerate(level.split("+")):
        if index:
            pieces.append("+")
        if part:
            pieces.append(part)
    return "/".join(pieces)


def _wildcard_problem(value: str, filter_part: str, prefix: str) -> str | None:
    """'#' and '+' placement, MQTT 5.0 §4.7.1.2 and §4.7.1.3."""
    levels = filter_part.split("/")
    last = len(levels) - 1

    def example(replaced: list[str], index: int) -> str:
        return prefix + "/".join(levels[:index] + replaced + levels[index + 1:])

    for index, level in enumerate(levels):
        if "#" in level:
            if level != "#":
                if index == last and level.endswith("#") and "#" not in level[:-1] \
                        and "+" not in level:
                    hint = example([level[:-1], "#"], index)
                else:
                    hint = "sensors/#"
                return (f"{_q(value)} is not allowed ('#' must be a whole topic level, "
                        f"as in {hint})")
            if index != last:
                return (f"{_q(value)} is not allowed ('#' may only be the last level; for "
                        f"one level in the middle use '+', as in {example(['+'], index)})")
        if "+" in level and level != "+":
            return (f"{_q(value)} is not allowed ('+' must be a whole topic level, "
                    f"as in {example([_split_plus(level)], index)})")
    return None


def topic_filter(value: str) -> str | None:
    """A subscription topic filter: MQTT 3.1.1 §4.7 / MQTT 5.0 §4.7.1, §4.7.3, §4.8.2.

    Control characters and non-characters are a SHOULD NOT in §1.5.4; mosquitto
    refuses them, so configuration does too.  Spaces inside a level are legal.
    """
    example = "sensors/+/temperature"
    problem = _mqtt_text_problem(value, "topic filter", example)
    if problem:
        return problem
    if value.startswith(_SHARE):
        parts = value.split("/", 2)
        if len(parts) < 3 or parts[2] == "":
            return (f"{_q(value)} is an incomplete shared subscription (MQTT 5.0 §4.8.2: "
                    f"$share/<group>/<filter>, as in $share/loggers/sensors/#)")
        group, inner = parts[1], parts[2]
        if group == "":
            return (f"{_q(value)} has an empty share group (MQTT 5.0 §4.8.2: "
                    f"$share/<group>/<filter>, as in $share/loggers/sensors/#)")
        if "+" in group or "#" in group:
            return (f"{_q(value)} has a wildcard in its share group {group!r} (the group "
                    f"is a plain name, MQTT 5.0 §4.8.2, as in $share/loggers/sensors/#)")
        return _wildcard_problem(value, inner, f"$share/{group}/")
    return _wildcard_problem(value, value, "")


_ACL_TOKENS = ("%u", "%c")
_PERCENT_TOKEN = re.compile(r"%[A-Za-z]")


def topic_filter_for_acl(value: str) -> str | None:
    """A mosquitto ACL ``topic``/``pattern``: a topic filter plus %u and %c.

    Follows mosquitto 2.x lib/util_topic.c (topic_matches_sub with patterns):
    %u (username) and %c (client id) are substituted only when the token is a
    whole level; elsewhere they are literal text, so they are refused there.
    ACLs are checked against the topic, so a ``$share/`` form is refused.
    """
    if isinstance(value, str) and value.startswith(_SHARE):
        parts = value.split("/", 2)
        inner = parts[2] if len(parts) == 3 and parts[2] else "sensors/#"
        return (f"{_q(value)} is the shared-subscription form (ACLs are checked against "
                f"the topic itself; write {inner})")
    problem = topic_filter(value)
    if problem:
        return problem
    for level in value.split("/"):
        if level in _ACL_TOKENS:
            continue
        found = _PERCENT_TOKEN.search(level)
        if found is None:
            continue
        token = found.group()
        if token in _ACL_TOKENS:
            return (f"{_q(value)} is not allowed (mosquitto substitutes {token} only when it "
                    f"is a whole topic level, as in devices/{token}/#)")
        return (f"{_q(value)} contains {token!r}, which mosquitto does not substitute (only "
                f"%u = username and %c = client id, each as a whole level, as in devices/%u/#)")
    return None


def topic_name(value: str) -> str | None:
    """A PUBLISH topic name: MQTT 5.0 §3.3.2.1, §4.7.1 (no wildcards), §4.7.2.

    Names starting with '$' are reserved for the broker (§4.7.2) and refused.
    """
    example = "sensors/line1/temperature"
    problem = _mqtt_text_problem(value, "topic name", example)
    if problem:
        return problem
    if "+" in value or "#" in value:
        return (f"{_q(value)} contains a wildcard ('+' and '#' are only for subscriptions; "
                f"a published topic names one topic, as in {example})")
    if value.startswith("$"):
        return (f"{_q(value)} starts with '$' (such topics are reserved for the broker, "
                f"MQTT 5.0 §4.7.2; use a name without it, as in {example})")
    return None


def bridge_topic(value: str) -> str | None:
    """The pattern of a mosquitto bridge `topic` line: a topic filter without spaces (mosquitto.conf splits the
    line on them, eclipse/mosquitto v2.0.11 src/conf.c `topic` handling with strtok_r) and without `$share/`
    (a bridge subscribes plainly)."""
    if isinstance(value, str) and value.startswith(_SHARE):
        return f"{_q(value)} is a shared subscription (a bridge topic is a plain filter, as in sensors/#)"
    problem = topic_filter(value)
    if problem:
        return problem
    if " " in value:
        return f"{_q(value)} contains a space (mosquitto.conf splits a bridge topic line on spaces)"
    if '"' in value:
        return f"{_q(value)} contains '\"' (mosquitto reads \"\" in a bridge topic line as an empty prefix)"
    return None


def topic_prefix(value: str) -> str | None:
    """A bridge's local or remote topic prefix: empty, or topic-name text without wildcards or spaces."""
    if value == "":
        return None
    problem = _mqtt_text_problem(value, "topic prefix", "plant7/")
    if problem:
        return problem
    if "+" in value or "#" in value:
        return f"{_q(value)} contains a wildcard (a prefix is plain text put in front of the topic, as in plant7/)"
    if " " in value:
        return f"{_q(value)} contains a space (mosquitto.conf splits a bridge topic line on spaces)"
    if '"' in value:
        return f"{_q(value)} contains '\"' (mosquitto reads \"\" in a bridge topic line as an empty prefix)"
    return None


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic name matches both filters (level by level: `+` matches any one level, `#` the rest)."""
    left, right = a.split("/"), b.split("/")
    for i in range(max(len(left), len(right))):
        x = left[i] if i < len(left) else None
        y = right[i] if i < len(right) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != y and "+" not in (x, y):
            return False
    return True


def _filter_part(topic_filter_value: str) -> str:
    """The filter inside ``$share/<group>/<filter>`` (MQTT 5.0 §4.8.2)."""
    if topic_filter_value.startswith(_SHARE):
        return topic_filter_value.split("/", 2)[2]
    return topic_filter_value


def topic_matches(filter: str, topic: str) -> bool:  # noqa: A002 - spec vocabulary
    """Whether ``filter`` matches ``topic``: MQTT 5.0 §4.7.1, §4.7.2, §4.8.2.

    '#' also matches the parent level ('sport/#' matches 'sport'), '+' matches
    one level including an empty one, and a filter starting with a wildcard
    never matches a topic starting with '$'.  Invalid input raises ValueError.
    """
    problem = topic_filter(filter)
    if problem:
        raise ValueError(problem)
    problem = _mqtt_text_problem(topic, "topic name", "sensors/line1/temperature")
    if problem is None and ("+" in topic or "#" in topic):
        problem = f"{_q(topic)} is a filter, not a topic name"
    if problem:
        raise ValueError(problem)
    part = _filter_part(filter)
    if topic.startswith("$") and part[:1] in ("+", "#"):
        return False
    filter_levels = part.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def matches_everything_from_depth(filter: str) -> int | None:  # noqa: A002
    """Least topic depth from which ``filter`` matches every topic, else None.

    Only filters made of '+' levels then '#' qualify (MQTT 5.0 §4.7.1.2: '#'
    matches the parent level too): '#' and '+/#' -> 1, '+/+/#' -> 2.  Topics
    starting with '$' are never matched by them (§4.7.2).
    """
    if not isinstance(filter, str) or topic_filter(filter) is not None:
        return None
    levels = _filter_part(filter).split("/")
    if levels[-1] != "#" or any(level != "+" for level in levels[:-1]):
        return None
    return max(len(levels) - 1, 1)


def is_catch_all(filter: str) -> bool:  # noqa: A002
    """Whether ``filter`` matches every topic not starting with '$' (e.g. '#', '+/#')."""
    depth = matches_everything_from_depth(filter)
    return depth is not None and depth <= 1


# --------------------------------------------------------------------------
# Kubernetes names
# --------------------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?", re.ASCII)
_DNS1123_SUBDOMAIN_MAX = 253


def _label_problem(value: str, label: str, allowed: str) -> str | None:
    """Why ``label`` is not an RFC 1123 label as Kubernetes spells it."""
    if label == "":
        return f"{_q(value)} has an empty label (labels are separated by single dots)"
    if _DNS1123_LABEL.fullmatch(label):
        return None
    if label != label.lower() and _DNS1123_LABEL.fullmatch(label.lower()):
        return f"{_q(value)} must be lower-case (did you mean {value.lower()!r}?)"
    bad = next((c for c in label if not (c.isascii() and (c.islower() or c.isdigit()
                                                           or c == "-"))), None)
    if bad is not None and not ("A" <= bad <= "Z"):
        return f"{_q(value)} contains {bad!r} ({allowed})"
    if bad is not None:
        return f"{_q(value)} must be lower-case ({allowed})"
    return f"{_q(value)} must start and end with a lower-case letter or digit"


def dns_label(value: str, max_len: int = 63) -> str | None:
    """A Kubernetes DNS-1123 label: apimachinery validation IsDNS1123Label.

    ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63 characters; callers may pass
    a smaller ``max_len`` to leave room for generated suffixes.
    """
    allowed = "use lower-case letters, digits and '-', starting and ending with a letter or digit"
    if not isinstance(value, str):
        return _not_text(value, "mqtt-broker")
    if value == "":
        return f"'' is empty (a name needs 1-{max_len} characters; {allowed})"
    if len(value) > max_len:
        return f"{_q(value)} is {len(value)} characters long (at most {max_len})"
    if "." in value:
        return f"{_q(value)} contains '.' (a single DNS label has none; {allowed})"
    return _label_problem(value, value, allowed)


def dns_1035_label(value: str, max_len: int = 63) -> str | None:
    """A Kubernetes DNS-1035 label: apimachinery validation IsDNS1035Label (Service names).

    ``[a-z]([-a-z0-9]*[a-z0-9])?``, at most 63 characters: a DNS-1123 label that
    starts with a letter.  ``max_len`` as for dns_label.
    """
    problem = dns_label(value, max_len)
    if problem is None and not value[0].isalpha():
        return (f"{_q(value)} must start with a lower-case letter (a Service name is a "
                f"DNS-1035 label, e.g. mqtt-{value})")
    return problem


def dns_subdomain(value: str) -> str | None:
    """A Kubernetes DNS-1123 subdomain: apimachinery IsDNS1123Subdomain.

    Dot-separated DNS-1123 labels, at most 253 characters in total
    (apimachinery checks no per-label length here, so neither does this).
    """
    allowed = ("use dot-separated parts of lower-case letters, digits and '-', each "
               "starting and ending with a letter or digit")
    if not isinstance(value, str):
        return _not_text(value, "mqtt.plant.example")
    if value == "":
        return f"'' is empty (a name needs 1-253 characters; {allowed})"
    if len(value) > _DNS1123_SUBDOMAIN_MAX:
        return f"{_q(value)} is {len(value)} characters long (at most 253)"
    for label in value.split("."):
        problem = _label_problem(value, label, allowed)
        if problem:
            return problem
    return None


_PORT_NAME_CHARS = re.compile(r"[-a-z0-9]+", re.ASCII)


def port_name(value: str) -> str | None:
    """A port name: apimachinery IsValidPortName (IANA_SVC_NAME, RFC 6335 §5.1).

    1-15 of a-z, 0-9 and '-', at least one letter, no leading, trailing or
    doubled '-'.  Lower-case only, as Kubernetes requires.
    """
    allowed = "1-15 lower-case letters, digits and '-', with at least one letter"
    if not isinstance(value, str):
        return _not_text(value, "mqtts")
    if value == "":
        return f"'' is empty (a port name has {allowed})"
    if len(value) > 15:
        return f"{_q(value)} is {len(value)} characters long (a port name has at most 15)"
    if not _PORT_NAME_CHARS.fullmatch(value):
        if _PORT_NAME_CHARS.fullmatch(value.lower()):
            return f"{_q(value)} must be lower-case (did you mean {value.lower()!r}?)"
        return f"{_q(value)} may contain only {allowed}"
    if not re.search(r"[a-z]", value):
        return f"{_q(value)} has no letter (a port name needs at least one, e.g. 'mqtt-{value}')"
    if value.startswith("-") or value.endswith("-"):
        return f"{_q(value)} must not begin or end with '-'"
    if "--" in value:
        return f"{_q(value)} must not contain '--'"
    return None


_LABEL_TEXT = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", re.ASCII)
_LABEL_ALLOWED = "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"


def _label_text_problem(value: str, text: str, what: str) -> str | None:
    if len(text) > 63:
        return f"{_q(value)} has a {what} of {len(text)} characters (at most 63)"
    if not _LABEL_TEXT.fullmatch(text):
        return f"{_q(value)} is not a valid {what} (1-63 {_LABEL_ALLOWED})"
    return None


def label_key(value: str) -> str | None:
    """A label key: apimachinery IsQualifiedName, ``[prefix/]name``.

    The name is 1-63 letters, digits, '-', '_' and '.', starting and ending with
    a letter or digit; the optional prefix is a DNS-1123 subdomain.
    """
    if not isinstance(value, str):
        return _not_text(value, "app.kubernetes.io/name")
    if value == "":
        return "'' is empty (a label key is [prefix/]name, e.g. app.kubernetes.io/name)"
    prefix, slash, name = value.rpartition("/")
    if slash:
        if "/" in prefix:
            return f"{_q(value)} has more than one '/' (a label key is [prefix/]name)"
        problem = dns_subdomain(prefix)
        if problem:
            return f"{_q(value)} has an invalid prefix: {problem}"
    if name == "":
        return f"{_q(value)} has an empty name after the prefix"
    return _label_text_problem(value, name, "label name")


def label_value(value: str) -> str | None:
    """A label value: apimachinery IsValidLabelValue (empty, or 1-63 characters as a label name)."""
    if not isinstance(value, str):
        return _not_text(value, "mosquitto")
    if value == "":
        return None
    return _label_text_problem(value, value, "label value")


_CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+", re.ASCII)


def config_map_key(value: str) -> str | None:
    """A key of a Secret's or ConfigMap's data: apimachinery IsConfigMapKey.

    ``[-._a-zA-Z0-9]+``, at most 253 characters, not '.' or '..' and not starting with '..'
    (k8s.io/apimachinery pkg/util/validation/validation.go, IsConfigMapKey).
    """
    allowed = "letters, digits, '-', '_' and '.', at most 253, as in AWS_ACCESS_KEY_ID"
    if not isinstance(value, str):
        return _not_text(value, "AWS_ACCESS_KEY_ID")
    if value == "":
        return f"'' is empty (a Secret key has {allowed})"
    if len(value) > _DNS1123_SUBDOMAIN_MAX:
        return f"{_q(value)} is {len(value)} characters long (a Secret key has at most 253)"
    if not _CONFIG_MAP_KEY.fullmatch(value):
        bad = next(c for c in value if not _CONFIG_MAP_KEY.fullmatch(c))
        return f"{_q(value)} contains {bad!r} (a Secret key has {allowed})"
    if value.startswith(".."):
        return f"{_q(value)} starts with '..' (Kubernetes refuses such a Secret key)"
    if value == ".":
        return "'.' is not a Secret key (Kubernetes refuses it)"
    return None


# --------------------------------------------------------------------------
# Kubernetes resource quantities
# --------------------------------------------------------------------------

_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exponent>[+-]?[0-9]+)|(?P<decimal>[numkMGTPE]?))",
    re.ASCII,
)
_BINARY_SI = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12,
               "P": 15, "E": 18}
_INT32_LIMIT = 2**31
_QUANTITY_MAX = Decimal(2**63 - 1)
_MIB = Decimal(2**20)


def parse_quantity(value: str) -> Decimal | None:
    """The exact value of a Kubernetes quantity, or None if it does not parse.

    apimachinery pkg/api/resource quantity.go grammar: signed number ('1', '1.',
    '.5', '1.5'), then a binarySI suffix (Ki..Ei), a decimalSI suffix (n u m ''
    k M G T P E, from suffix.go) or a decimal exponent e/E with a signed integer.
    No rounding is applied (Kubernetes rounds up to 1n and caps at 2^63-1).
    """
    if not isinstance(value, str):
        return None
    found = _QUANTITY.fullmatch(value)
    if found is None:
        return None
    sign, number = found["sign"], found["number"]
    if found["binary"]:
        with decimal.localcontext() as context:
            context.prec = len(number) + 40
            return Decimal(sign + number) * (1 << _BINARY_SI[found["binary"]])
    if found["exponent"] is not None:
        exponent = int(found["exponent"])
        if abs(exponent) >= _INT32_LIMIT:
            return None
    else:
        exponent = _DECIMAL_SI[found["decimal"]]
    return Decimal(f"{sign}{number}E{exponent}")


def _is_integral(amount: Decimal) -> bool:
    """Exact test (no context rounding) that a Decimal has no fraction."""
    _, digits, exponent = amount.as_tuple()
    return exponent >= 0 or all(digit == 0 for digit in digits[exponent:])


def _unit_hint(number: str, suffix: str) -> str | None:
    """A suggestion for a common unit mistake, or None."""
    if "," in number:
        return None
    binary = {"k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti", "p": "Pi", "e": "Ei"}
    decimal_si = {"k": "k", "m": "M", "g": "G", "t": "T", "p": "P", "e": "E"}
    lowered = suffix.lower()
    if lowered in ("ki", "mi", "gi", "ti", "pi", "ei"):
        return f"binary suffixes are case-sensitive: write {number}{binary[lowered[0]]}"
    if lowered in ("kib", "mib", "gib", "tib", "pib", "eib"):
        return f"Kubernetes has no 'B' unit: write {number}{binary[lowered[0]]}"
    if len(lowered) == 2 and lowered[1] == "b" and lowered[0] in binary:
        return (f"Kubernetes has no 'b'/'B' unit: write {number}{binary[lowered[0]]} "
                f"(binary) or {number}{decimal_si[lowered[0]]} (decimal)")
    if suffix == "K":
        return f"kilo is a lower-case k: write {number}k (decimal) or {number}Ki (binary)"
    if lowered in ("b", "byte", "bytes"):
        return f"bytes have no suffix: write {number}"
    if lowered in ("core", "cores", "cpu", "cpus", "vcpu", "vcpus"):
        return f"CPUs have no suffix: write {number} (or 500m for half a CPU)"
    return None


def quantity(value: str, kind: str) -> str | None:
    """A positive Kubernetes quantity for ``kind`` 'cpu', 'memory' or 'storage'.

    Grammar as parse_quantity (apimachinery quantity.go).  Memory and storage
    must be whole bytes and may not use n/u/m (nano/micro/milli-bytes); a bare
    number below 1Mi is taken as a forgotten unit.  CPU is scheduled in 1m
    steps (Kubernetes "CPU resource units"), and Ki..Ei or k..E are refused
    as likely mix-ups ('500M' CPU is 500 million CPUs).
    """
    examples = {"cpu": "500m or 2", "memory": "512Mi or 1.5Gi", "storage": "1Gi or 500Mi"}
    if kind not in examples:
        raise ValueError(f"kind must be 'cpu', 'memory' or 'storage', not {kind!r}")
    example = examples[kind]
    if not isinstance(value, str):
        return _not_text(value, example)
    amount = parse_quantity(value)
    if amount is None:
        return _quantity_syntax_problem(value, example)
    found = _QUANTITY.fullmatch(value)
    assert found is not None
    if amount < 0:
        return f"{_q(value)} is negative (a {kind} amount must be positive, e.g. {example})"
    if amount == 0:
        return f"{_q(value)} is zero (a {kind} amount must be greater than zero, e.g. {example})"
    if amount > _QUANTITY_MAX:
        return f"{_q(value)} is too large (Kubernetes quantities are at most 2^63-1)"
    if kind == "cpu":
        return _cpu_problem(value, amount, found)
    return _bytes_problem(value, amount, found, kind)


def _quantity_syntax_problem(value: str, example: str) -> str:
    if value == "":
        return f"'' is empty (expected a quantity such as {example})"
    compact = "".join(value.split())
    if compact != value and parse_quantity(compact) is not None:
        return f"{_q(value)} contains whitespace (write {compact})"
    parts = re.fullmatch(r"([+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+))([A-Za-z]+)?", compact)
    if parts and "," in parts[1]:
        return f"{_q(value)} uses ',' as decimal mark (write {compact.replace(',', '.')})"
    if parts and parts[2]:
        hint = _unit_hint(parts[1], parts[2])
        suffixes = "Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent such as 1e3"
        if hint:
            return f"{_q(value)} has the unknown suffix {parts[2]!r} ({hint})"
        return f"{_q(value)} has the unknown suffix {parts[2]!r} (allowed: {suffixes})"
    return (f"{_q(value)} is not a Kubernetes quantity (a number with an optional suffix, "
            f"e.g. {example})")


def _cpu_problem(value: str, amount: Decimal, found: re.Match[str]) -> str | None:
    suffix = found["binary"] or found["decimal"] or ""
    if found["binary"]:
        return (f"{_q(value)} uses the byte suffix {suffix!r} (CPU is counted in CPUs, "
                f"e.g. 2, or millicpu, e.g. 500m)")
    if suffix in ("k", "M", "G", "T", "P", "E"):
        return (f"{_q(value)} means {amount:,.0f} CPUs ({suffix!r} is a large multiplier; "
                f"millicpu is a lower-case m, as in {found['number']}m)")
    sign, digits, exponent = amount.as_tuple()
    if not _is_integral(Decimal((sign, digits, exponent + 3))):
        return (f"{_q(value)} is finer than 1m (Kubernetes schedules CPU in steps of "
                f"1m = 0.001 CPU; e.g. 1m or 0.001)")
    return None


def _bytes_problem(value: str, amount: Decimal, found: re.Match[str], kind: str) -> str | None:
    suffix = found["decimal"] or ""
    number = found["number"]
    if suffix in ("n", "u", "m"):
        unit = {"n": "nano", "u": "micro", "m": "milli"}[suffix]
        return (f"{_q(value)} means {amount.normalize():f} bytes ({suffix!r} means "
                f"{unit}-bytes; use Mi or Gi, e.g. {number}Mi)")
    if not _is_integral(amount):
        return (f"{_q(value)} is not a whole number of bytes ({amount.normalize():f}); "
                f"round it or use a smaller unit, e.g. Mi")
    if found["binary"] is None and found["exponent"] is None and suffix == "" \
            and amount < _MIB:
        return (f"{_q(value)} is {amount} bytes (a number without a unit means bytes; "
                f"did you mean {number}Mi?)")
    return None


# --------------------------------------------------------------------------
# IP addresses and CIDRs
# --------------------------------------------------------------------------

_DOTTED_QUAD = re.compile(r"[0-9]+(?:\.[0-9]+){3}", re.ASCII)
_PREFIX_LENGTH = re.compile(r"0|[1-9][0-9]{0,2}", re.ASCII)


def _address_problem(value: str, address: str) -> str | None:
    """Why ``address`` is not a Go netip/ParseCIDR-acceptable IP, or None."""
    if "%" in address:
        return (f"{_q(value)} has an IPv6 zone ('%...'), which addresses in Kubernetes "
                f"and certificates cannot carry; drop it")
    if address.startswith("[") or address.endswith("]"):
        return f"{_q(value)} has brackets (write the address without '[' and ']')"
    if _DOTTED_QUAD.fullmatch(address) and re.search(r"(?:^|\.)0[0-9]", address):
        fixed = ".".join(str(int(octet)) for octet in address.split("."))
        return (f"{_q(value)} has an octet with a leading zero (octal or decimal? Go "
                f"and Kubernetes refuse it; write {value.replace(address, fixed, 1)})")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return f"{_q(value)} is not an IPv4 or IPv6 address (e.g. 10.20.0.0 or fd00::)"
    return None


def cidr(value: str) -> str | None:
    """An IPv4/IPv6 network as for Service loadBalancerSourceRanges.

    Kubernetes (apimachinery validation/ip.go) parses it with ParseCIDRSloppy and
    warns on leading zeros and host bits; this refuses both, as the strict
    IsValidCIDR and Go >= 1.17 net.ParseCIDR / netip.ParsePrefix do.  A prefix
    length is required; a netmask ('/255.0.0.0') or zone is not accepted.
    """
    if not isinstance(value, str):
        return _not_text(value, "10.20.0.0/16")
    if value == "":
        return "'' is empty (expected a network such as 10.20.0.0/16)"
    if value != value.strip():
        return f"{_q(value)} has leading or trailing whitespace (write {value.strip()})"
    address, slash, length = value.partition("/")
    if not slash:
        if _address_problem(value, address) is None:
            single = 32 if ipaddress.ip_address(address).version == 4 else 128
            return (f"{_q(value)} has no prefix length (write {address}/{single} for this "
                    f"one address, or a network such as 10.20.0.0/16)")
        return f"{_q(value)} is not a network (expected address/prefix, e.g. 10.20.0.0/16)"
    problem = _address_problem(value, address)
    if problem:
        return problem
    version = ipaddress.ip_address(address).version
    maximum = 32 if version == 4 else 128
    if not _PREFIX_LENGTH.fullmatch(length):
        hint = ""
        if version == 4:
            try:
                hint = f"; did you mean {ipaddress.ip_network(value, strict=False)}?"
            except ValueError:
                hint = ""
        return (f"{_q(value)} needs a prefix length 0-{maximum} after '/', without "
                f"leading zeros{hint}")
    if int(length) > maximum:
        return (f"{_q(value)} has prefix length {length} (an IPv{version} prefix length "
                f"is 0-{maximum})")
    network = ipaddress.ip_network(value, strict=False)
    if network.network_address != ipaddress.ip_address(address):
        return (f"{_q(value)} has host bits set (did you mean {network}, or "
                f"{address}/{maximum} for that one address?)")
    return None


_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def is_open_cidr(value: str) -> bool:
    """Whether a network admits every client: any /0, or all IPv4-mapped IPv6."""
    if not isinstance(value, str):
        return False
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return False
    if network.prefixlen == 0:
        return True
    return network.version == 6 and _IPV4_MAPPED.subnet_of(network)


# --------------------------------------------------------------------------
# OCI image references
# --------------------------------------------------------------------------

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6_HOST = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = r"(?:" + _DOMAIN_NAME + "|" + _IPV6_HOST + r")(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN + r"/)?" + _REMOTE_NAME
_REFERENCE_RE = re.compile(
    r"(?P<name>" + _NAME + r")(?::(?P<tag>" + _TAG + r"))?(?:@(?P<digest>" + _DIGEST + r"))?",
    re.ASCII,
)
_PATH_COMPONENT_RE = re.compile(_PATH_COMPONENT, re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_NAME_MAX = 255
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}  # go-digest
_IMAGE_EXAMPLE = "registry.plant.local:5000/eclipse-mosquitto:2.0.20"


def _split_domain(name: str) -> tuple[str | None, str, bool]:
    """(registry, repository, by_case) as distribution normalize.go splitDockerDomain.

    The first component is a registry if it contains '.' or ':', is
    'localhost', or (``by_case``) merely contains an upper-case letter.
    """
    first, slash, rest = name.partition("/")
    if not slash:
        return None, name, False
    if first == "localhost" or "." in first or ":" in first:
        return first, rest, False
    if first.lower() != first:
        return first, rest, True
    return None, name, False


def _rough_split(value: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) split on '@' and the last ':' after the last '/'."""
    rest, at, digest = value.partition("@")
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        return rest[:colon], rest[colon + 1:], (digest if at else None)
    return rest, None, (digest if at else None)


def _image_syntax_problem(value: str) -> str:
    """The most specific reason ``value`` fails the distribution grammar."""
    name, tag, digest = _rough_split(value)
    registry, path, _ = _split_domain(name)
    if registry is not None and not _DOMAIN_RE.fullmatch(registry):
        return (f"{_q(value)} has an invalid registry {registry!r} (expected host[:port], "
                f"as in {_IMAGE_EXAMPLE})")
    if path.lower() != path and _REFERENCE_RE.fullmatch(value.replace(path, path.lower(), 1)):
        fixed = value.replace(path, path.lower(), 1)
        return f"{_q(value)} has an upper-case repository name (did you mean {fixed!r}?)"
    for component in path.split("/"):
        if component == "":
            return (f"{_q(value)} has an empty path component (no leading, trailing or "
                    f"doubled '/')")
        if ":" in component:
            return (f"{_q(value)} has more than one ':' (a reference has at most one tag; "
                    f"a registry port goes before the first '/')")
        if not _PATH_COMPONENT_RE.fullmatch(component):
            return (f"{_q(value)} has an invalid path component {component!r} (lower-case "
                    f"letters and digits joined by '.', '_', '__' or '-')")
    if tag is not None and not _TAG_RE.fullmatch(tag):
        if tag == "":
            return f"{_q(value)} has an empty tag after ':' (e.g. :2.0.20)"
        return (f"{_q(value)} has an invalid tag {tag!r} (1-128 letters, digits, '_', '.' "
                f"or '-', not starting with '.' or '-')")
    if digest is not None and not _DIGEST_RE.fullmatch(digest):
        return (f"{_q(value)} has an invalid digest {digest!r} (expected algorithm:hex, "
                f"e.g. sha256: followed by 64 hex digits)")
    return (f"{_q(value)} is not an image reference (expected "
            f"[registry[:port]/]repository[:tag][@digest], e.g. {_IMAGE_EXAMPLE})")


def _parse_image(value: object) -> tuple[str | None, tuple[str | None, str, str | None,
                                                          str | None] | None]:
    """(problem, parts) for the grammar alone, without the pinning policy."""
    if not isinstance(value, str):
        return _not_text(value, _IMAGE_EXAMPLE), None
    if value == "":
        return f"'' is empty (expected an image such as {_IMAGE_EXAMPLE})", None
    if any(char.isspace() for char in value):
        return f"{_q(value)} contains whitespace (an image reference has none)", None
    if "://" in value:
        scheme, _, rest = value.partition("://")
        return (f"{_q(value)} has a URL scheme (image references have none; drop "
                f"'{scheme}://' and write {rest or _IMAGE_EXAMPLE})"), None
    if re.fullmatch(r"[a-f0-9]{64}", value):
        return (f"{_q(value)} is a bare image ID (write repository@sha256:<id>, "
                f"e.g. eclipse-mosquitto@sha256:...)"), None
    found = _REFERENCE_RE.fullmatch(value)
    if found is None:
        return _image_syntax_problem(value), None
    name, tag, digest = found["name"], found["tag"], found["digest"]
    if name in _DIGEST_HEX_LENGTH and tag is not None and re.fullmatch(r"[0-9a-fA-F]{32,}", tag):
        return (f"{_q(value)} is a bare digest (name the repository too, e.g. "
                f"eclipse-mosquitto@{name}:...)"), None
    if len(name) > _NAME_MAX:
        return (f"{_q(value)} has a {len(name)}-character name (registry and repository "
                f"are at most 255 characters)"), None
    registry, repository, by_case = _split_domain(name)
    if by_case:
        fixed = value.replace(registry or "", (registry or "").lower(), 1)
        return (f"{_q(value)} has an upper-case repository name ({registry!r} would be taken "
                f"as a registry host; did you mean {fixed!r}?)"), None
    if digest is not None:
        algorithm, _, hex_digits = digest.partition(":")
        expected = _DIGEST_HEX_LENGTH.get(algorithm)
        if expected is None:
            return (f"{_q(value)} uses the digest algorithm {algorithm!r} (registries "
                    f"accept sha256, sha384 or sha512)"), None
        if len(hex_digits) != expected:
            return (f"{_q(value)} has a {len(hex_digits)}-digit {algorithm} digest (it "
                    f"needs {expected} hex digits)"), None
        if hex_digits != hex_digits.lower():
            return f"{_q(value)} has upper-case digest hex (write it in lower case)", None
    return None, (registry, repository, tag, digest)


def image_reference(value: str) -> str | None:
    """A pinned container image: distribution/reference grammar (regexp.go, reference.go).

    Name is [domain[:port]/]path (path components ``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*``,
    at most 255 characters), ``:tag`` is ``\\w[\\w.-]{0,127}``, ``@digest`` is
    algorithm:hex as go-digest validates it.  Configuration also requires a
    tag or digest, and refuses 'latest' without a digest.
    """
    problem, parts = _parse_image(value)
    if problem:
        return problem
    assert parts is not None
    registry, repository, tag, digest = parts
    if tag is None and digest is None:
        return (f"{_q(value)} is not pinned (pin a tag or digest, e.g. "
                f"{value}:<version> or {value}@sha256:...)")
    if tag == "latest" and digest is None:
        base = value[: -len(":latest")]
        return (f"{_q(value)} uses the moving tag 'latest' (pin a version tag, e.g. "
                f"{base}:<version>, or add @sha256:...)")
    return None


def image_parts(value: str) -> tuple[str | None, str, str | None, str | None]:
    """(registry, repository, tag, digest) of a reference; registry None means Docker Hub.

    Registry detection follows distribution normalize.go splitDockerDomain.
    Raises ValueError when the reference does not parse (pinning is not checked).
    """
    problem, parts = _parse_image(value)
    if problem:
        raise ValueError(problem)
    assert parts is not None
    return parts


# --------------------------------------------------------------------------
# Certificate subject alternative names
# --------------------------------------------------------------------------

_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?", re.ASCII)
_IP_KEY = "pki.extraIpAddresses"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _san_label_problem(value: str, label: str) -> str | None:
    if label == "":
        return f"{_q(value)} has an empty label (labels are separated by single dots)"
    if len(label) > 63:
        return f"{_q(value)} has a {len(label)}-character label (at most 63)"
    if _LDH_LABEL.fullmatch(label):
        return None
    if "_" in label:
        return (f"{_q(value)} contains '_' (host names allow letters, digits and '-' "
                f"only; use '-')")
    if label.startswith("-") or label.endswith("-"):
        return f"{_q(value)} has a label starting or ending with '-' (not allowed)"
    bad = next(char for char in label if not (char.isascii() and (char.isalnum()
                                                                   or char == "-")))
    return f"{_q(value)} contains {bad!r} (host names allow letters, digits and '-' only)"


def san_dns_name(value: str, ip_key: str = _IP_KEY) -> str | None:
    """A certificate dNSName: RFC 5280 §4.2.1.6 (RFC 1123 host syntax), RFC 6125 §6.4.3.

    Letters, digits and '-' per label (<= 63), <= 253 in total, no trailing
    dot; single-label names such as 'mosquitto' are allowed.  A wildcard is
    only a whole left-most '*' with two or more labels after it (RFC 9525
    §6.3 drops partial wildcards).  IP addresses belong in iPAddress SANs
    (``ip_key``: where a message tells to put them).
    """
    if not isinstance(value, str):
        return _not_text(value, "mqtt.plant.example")
    if value == "":
        return "'' is empty (expected a DNS name such as mqtt.plant.example)"
    if any(char.isspace() for char in value):
        return f"{_q(value)} contains whitespace (a DNS name has none)"
    if "://" in value:
        rest = value.partition("://")[2].split("/")[0]
        return f"{_q(value)} is a URL (write only the host name, e.g. {rest or 'mqtt.plant.example'})"
    if _is_ip(value.strip("[]")) or _is_ip(value.split("%")[0]):
        return f"{_q(value)} is an IP address (use {ip_key} for IP addresses)"
    if ":" in value:
        host, _, port = value.rpartition(":")
        if port.isdigit() and host:
            return f"{_q(value)} has a port (a certificate name has none; write {host})"
        return f"{_q(value)} contains ':' (host names allow letters, digits and '-' only)"
    if value.endswith(".") and value != ".":
        return f"{_q(value)} ends with '.' (certificate names are written without it: {value.rstrip('.')})"
    if not value.isascii():
        try:
            hint = f"; did you mean {value.encode('idna').decode('ascii')!r}?"
        except UnicodeError:
            hint = ""
        return (f"{_q(value)} is not ASCII (certificates carry internationalised names "
                f"as xn-- A-labels{hint})")
    if len(value) > 253:
        return f"{_q(value)} is {len(value)} characters long (a DNS name has at most 253)"
    labels = value.split(".")
    if "*" in value:
        if "*" in "".join(labels[1:]):
            return (f"{_q(value)} has a wildcard outside the left-most label (only a whole "
                    f"first label '*' is allowed, as in *.plant.example)")
        if labels[0] != "*":
            return (f"{_q(value)} has a partial wildcard {labels[0]!r} (only a whole "
                    f"first label '*' is allowed, as in *.plant.example)")
        if len(labels) < 3:
            return (f"{_q(value)} is too broad (a wildcard needs at least two labels after "
                    f"'*.', as in *.plant.example)")
        labels = labels[1:]
    for label in labels:
        problem = _san_label_problem(value, label)
        if problem:
            return problem
    if labels[-1].isdigit():
        return (f"{_q(value)} ends in an all-numeric label, so it is not a host name "
                f"(RFC 1123 §2.1); for IP addresses use {ip_key}")
    return None


def ip_address(value: str) -> str | None:
    """One IPv4 or IPv6 address for a certificate iPAddress SAN (RFC 5280 §4.2.1.6).

    Dotted-quad without leading zeros (as Go's net/netip parse it), or an IPv6
    address; no brackets, zone, port or prefix length.
    """
    if not isinstance(value, str):
        return _not_text(value, "10.20.0.5")
    if value == "":
        return "'' is empty (expected an address such as 10.20.0.5 or fd00::5)"
    if value != value.strip():
        return f"{_q(value)} has leading or trailing whitespace (write {value.strip()})"
    if "/" in value:
        address = value.partition("/")[0]
        return (f"{_q(value)} is a network (a certificate names single addresses; "
                f"write {address})")
    if value.count(":") == 1 and "." in value:
        address = value.partition(":")[0]
        return f"{_q(value)} has a port (a certificate address has none; write {address})"
    problem = _address_problem(value, value)
    if problem is None:
        return None
    if "%" in value or value.startswith("[") or "leading zero" in problem:
        return problem
    if san_dns_name(value) is None:
        return f"{_q(value)} is a DNS name, not an IP address (e.g. 10.20.0.5 or fd00::5)"
    return problem


def host_name(value: str) -> str | None:
    """A server to connect to (an NFS server): an IP address, or a DNS name without wildcards."""
    if ip_address(value) is None:
        return None
    if isinstance(value, str) and value.startswith("*"):
        return f"{_q(value)} is not allowed (use the server's host name or IP address, no wildcards)"
    problem = san_dns_name(value)
    return problem.replace(f"use {_IP_KEY} for IP addresses", "use a host name or IP address") \
        if problem else None


# --------------------------------------------------------------------------
# Names written as they are: patterns shared by the stack model and the components
# --------------------------------------------------------------------------

class Pattern:
    """A regular expression and what to write instead, for names that have no published grammar of their
    own but are written into files and topics as they are (so they must not carry separators)."""

    def __init__(self, regex: str, hint: str):
        self.regex, self.hint = regex, hint
        self.compiled = re.compile(regex)


USER_NAME = Pattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                    "use letters, digits, '_', '.' and '-', at most 64, no spaces")
"""MQTT user names: a line of the password file and ACL, a topic level of the templates, a certificate CN (at
most 64) and part of a Secret key (components/client_bundles.py)."""
GROUP_ID = Pattern(r"^[A-Za-z0-9_.-]{1,64}$", "use letters, digits, '_', '.' and '-', at most 64")
"""Sparkplug group ids: one topic level (no '/', '+' or '#')."""
SHORT_NAME = Pattern(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$",
                     "use lower-case letters, digits and '-', starting with a letter, at most 32")
"""The broker name of a stack, and factory zones (one topic level)."""
NFS_PATH = Pattern(r"^/[A-Za-z0-9._/-]*$", "use an absolute export path such as /exports/mqtt")
PRINTABLE_64 = Pattern(r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]{1,64}$",
                       "use 1 to 64 printable characters")
"""A certificate subject's O or CN (X.509 upper bounds: 64): no control or bidirectional-override characters."""


def matches(value: str, pattern: Pattern) -> str | None:
    """None when ``value`` matches ``pattern``, else the message the stack model gives for it."""
    if not isinstance(value, str):
        return _not_text(value, "a name")
    if pattern.compiled.fullmatch(value):
        return None
    return f"{_q(value)} is not allowed ({pattern.hint})"


# --------------------------------------------------------------------------
# mosquitto durations
# --------------------------------------------------------------------------

_DURATION_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}
_DURATION_RE = re.compile(r"([0-9]+)([hdwmy])", re.ASCII)
_DURATION_WORDS = {"hour": "h", "hr": "h", "day": "d", "week": "w", "wk": "w",
                   "month": "m", "year": "y", "yr": "y"}
_C_INT_MAX = 2**31 - 1


def duration(value: str) -> str | None:
    """A mosquitto ``persistent_client_expiration``: mosquitto.conf(5), src/conf.c.

    A positive whole number followed by h (hours), d (days), w (weeks),
    m (months of 30 days - not minutes) or y (years of 365 days).  mosquitto
    multiplies in a C int, so the total must stay below 2^31 seconds (68y).
    """
    allowed = "a whole number followed by h, d, w, m (months) or y, as in 14d"
    if not isinstance(value, str):
        return _not_text(value, "14d")
    if value == "":
        return f"'' is empty (expected {allowed})"
    found = _DURATION_RE.fullmatch(value)
    if found is None:
        compact = "".join(value.split())
        if compact != value and _DURATION_RE.fullmatch(compact):
            return f"{_q(value)} contains whitespace (write {compact})"
        unit = re.fullmatch(r"([0-9]+)\s*([A-Za-z]+)", value)
        word = unit[2].lower().rstrip("s") if unit else ""
        if word in _DURATION_WORDS:
            return (f"{_q(value)} spells out the unit (write {unit[1]}{_DURATION_WORDS[word]}; "
                    f"{allowed})")
        if unit and unit[2].lower() in ("s", "sec", "min", "mins", "minutes", "seconds"):
            return (f"{_q(value)} uses a unit mosquitto does not have here (the smallest "
                    f"is h; {allowed})")
        if unit and unit[2] in ("H", "D", "W", "M", "Y"):
            return f"{_q(value)} has an upper-case unit (units are lower-case: {allowed})"
        return f"{_q(value)} is not a mosquitto duration ({allowed})"
    count, unit = int(found[1]), found[2]
    if count == 0:
        return f"{_q(value)} is zero (mosquitto requires a positive duration: {allowed})"
    if count * _DURATION_UNITS[unit] > _C_INT_MAX:
        return (f"{_q(value)} is too long (mosquitto stores it in seconds as a C int, "
                f"so at most about 68y)")
    return None


_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})",
                      re.ASCII)
_DATE_LIKE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?:\D.*)?", re.ASCII | re.DOTALL)


def looks_like_a_time(value: str) -> bool:
    """Whether a text starts like a calendar date (2026-08-14...): it is meant as a time, right or wrong."""
    return isinstance(value, str) and bool(_DATE_LIKE.fullmatch(value))


def rfc3339_time(value: str) -> str | None:
    """An RFC 3339 date-time with its offset (RFC 3339 §5.6 `date-time`): 2026-08-14T06:30:00Z or
    2026-08-14T08:30:00+02:00, fractions of a second allowed; the date and time must exist (no 2026-02-30, no
    25:00; a leap second :60 is refused too, as Python's datetime cannot hold it)."""
    example = "2026-08-14T06:30:00Z"
    if not isinstance(value, str):
        return _not_text(value, example)
    found = _RFC3339.fullmatch(value)
    if found is None:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return f"{_q(value)} is a date without a time (write a time with its offset, e.g. {value}T00:00:00Z)"
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[ Tt]\d{2}:\d{2}(:\d{2}(\.\d+)?)?", value):
            return (f"{_q(value)} has no UTC offset (a time without one means a different moment in every time "
                    f"zone; add Z for UTC or +hh:mm, e.g. {example})")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}.*", value):
            return f"{_q(value)} separates date and time with a space (write T, e.g. {example})"
        return f"{_q(value)} is not an RFC 3339 time (e.g. {example})"
    year, month, day, hour, minute, second, _, offset = found.groups()
    try:  # the fields one by one (fromisoformat takes fewer fraction lengths on Python 3.10)
        datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        if offset not in ("Z", "z") and (int(offset[1:3]) > 23 or int(offset[4:]) > 59):
            raise ValueError(f"the offset {offset} is out of range")
    except ValueError as exc:
        return f"{_q(value)} is not a real date and time ({exc})"
    return None


def duration_seconds(value: str) -> int:
    """Seconds of a valid mosquitto duration (see duration(): m is a 30-day month)."""
    found = _DURATION_RE.fullmatch(value)
    return int(found[1]) * _DURATION_UNITS[found[2]]


def ranges_cover_everything(values) -> bool:
    """True when source ranges together admit every IPv4 or every IPv6 address (0.0.0.0/1 + 128.0.0.0/1 is
    as open as 0.0.0.0/0); unparseable entries are ignored (the range grammar refuses them)."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            continue
    for version, everything in ((4, 2 ** 32), (6, 2 ** 128)):
        collapsed = ipaddress.collapse_addresses(n for n in networks if n.version == version)
        if sum(n.num_addresses for n in collapsed) >= everything:
            return True
    return any(is_open_cidr(str(n)) for n in networks)


# A Prometheus duration, as prometheus/common model.ParseDuration reads one (model/time.go, the regexp
# `^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$`, units in that order,
# and "0" alone): what a PodMonitor's interval and a rule's `for` accept.
_PROM_DURATION_RE = re.compile(r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?"
                               r"(?:([0-9]+)s)?(?:([0-9]+)ms)?")
_PROM_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def prometheus_duration(value: str) -> str | None:
    """A Prometheus duration such as 30s, 1m30s or 2h: units y, w, d, h, m, s, ms, largest first."""
    allowed = "whole numbers with units y, w, d, h, m, s or ms, largest first, as in 30s or 1m30s"
    if not isinstance(value, str):
        return _not_text(value, "30s")
    found = _PROM_DURATION_RE.fullmatch(value)
    if not value or found is None or not any(found.groups()):
        return f"{_q(value)} is not a Prometheus duration ({allowed})"
    return None


def prometheus_duration_ms(value: str) -> int:
    """Milliseconds of a valid Prometheus duration."""
    found = _PROM_DURATION_RE.fullmatch(value)
    return sum(int(part) * unit for part, unit in zip(found.groups(), _PROM_UNITS_MS) if part)
