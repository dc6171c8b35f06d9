"""pulumi-random computed for real from the stack seed: same inputs, same outputs, stable run to run."""

from __future__ import annotations

import base64
import string

from estate.seed import Seed

DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def _string(seed: Seed, name: str, inputs: dict) -> str:
    rng = seed.rng("random", name)
    length = int(inputs.get("length", 16))
    classes = []
    for flag, minimum, chars in (("upper", "minUpper", string.ascii_uppercase),
                                 ("lower", "minLower", string.ascii_lowercase),
                                 ("numeric", "minNumeric", string.digits),
                                 ("special", "minSpecial", inputs.get("overrideSpecial") or DEFAULT_SPECIAL)):
        if inputs.get(flag, True) is not False:
            classes.append((chars, int(inputs.get(minimum, 0))))
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
    raw = seed.derive("random-id", name, size=int(inputs.get("byteLength", 8)))
    return {**inputs, "hex": raw.hex(), "b64Std": base64.b64encode(raw).decode(),
            "b64Url": base64.urlsafe_b64encode(raw).decode().rstrip("="), "dec": str(int.from_bytes(raw, "big"))}


RESOURCES = {
    "random:index/randomPassword:RandomPassword": random_password,
    "random:index/randomString:RandomString": random_string,
    "random:index/randomId:RandomId": random_id,
}
