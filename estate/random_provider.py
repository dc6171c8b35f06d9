"""pulumi-random computed for real from the stack seed: same inputs, same outputs, stable run to run."""

from __future__ import annotations

import base64
import json
import string

from .seed import Seed

DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"
MAX_LENGTH = 65536
"""The provider has no upper bound; the offline engine refuses what no password needs instead of filling memory."""
CLASSES = (("upper", "minUpper", string.ascii_uppercase), ("lower", "minLower", string.ascii_lowercase),
           ("numeric", "minNumeric", string.digits), ("special", "minSpecial", None))


class InputError(ValueError):
    """Inputs the real provider refuses too (its validators), or that the offline engine cannot compute: the
    message says which input is wrong and what is allowed (the engine adds the resource's type and name)."""


def _int(inputs: dict, key: str, default, minimum: int, maximum: int) -> int:
    value = inputs.get(key, default)
    if value is None:
        raise InputError(f"{key} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{key}: {value!r} is not a whole number")
    if not minimum <= value <= maximum:
        raise InputError(f"{key}: {value} is out of range (must be >= {minimum} and <= {maximum})")
    return value


def _string(seed: Seed, name: str, inputs: dict) -> str:
    # The provider's validators: length >= 1, every min* >= 0, and length >= minUpper + minLower + minNumeric +
    # minSpecial ("Attribute length value must be at least sum of min_upper + min_lower + min_numeric +
    # min_special"); at least one character class enabled.
    length = _int(inputs, "length", None, 1, MAX_LENGTH)
    special = inputs.get("overrideSpecial") or DEFAULT_SPECIAL
    if not isinstance(special, str):
        raise InputError(f"overrideSpecial: {special!r} is not a string")
    classes = []
    total = 0
    for flag, minimum_key, chars in CLASSES:
        minimum = _int(inputs, minimum_key, 0, 0, MAX_LENGTH)
        total += minimum
        if inputs.get(flag, True) is not False:
            classes.append((chars or special, minimum))
    if total > length:
        raise InputError(f"length {length} is less than minUpper + minLower + minNumeric + minSpecial ({total})")
    if not classes:
        raise InputError("upper, lower, numeric and special are all false (at least one must be true)")
    # keepers are the provider's way to ask for a new value (a change replaces the resource): the value derives
    # from them too, and from the name alone without them (so a resource without keepers keeps its value)
    keepers = inputs.get("keepers")
    rng = seed.rng("random", name, json.dumps(keepers, sort_keys=True, separators=(",", ":"))) if keepers \
        else seed.rng("random", name)
    chars = [rng.choice(pool) for pool, minimum in classes for _ in range(minimum)]
    alphabet = "".join(pool for pool, _ in classes)
    chars += [rng.choice(alphabet) for _ in range(length - len(chars))]
    rng.shuffle(chars)
    return "".join(chars)


def random_password(seed: Seed, name: str, inputs: dict) -> dict:
    return {**inputs, "result": _string(seed, name, inputs)}


def random_string(seed: Seed, name: str, inputs: dict) -> dict:
    return {**inputs, "result": _string(seed, name, inputs)}


def random_id(seed: Seed, name: str, inputs: dict) -> dict:
    raw = seed.derive("random-id", name, size=_int(inputs, "byteLength", 8, 1, MAX_LENGTH))
    return {**inputs, "hex": raw.hex(), "b64Std": base64.b64encode(raw).decode(),
            "b64Url": base64.urlsafe_b64encode(raw).decode().rstrip("="), "dec": str(int.from_bytes(raw, "big"))}


RESOURCES = {
    "random:index/randomPassword:RandomPassword": random_password,
    "random:index/randomString:RandomString": random_string,
    "random:index/randomId:RandomId": random_id,
}
