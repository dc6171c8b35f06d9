"""Password rules, judged by how each password was made (components/credentials.py, README "Passwords").

A supplied password is guessable, so its hash needs iterations; a generated one with enough entropy does not,
and every iteration is paid again by the broker on each CONNECT. So: supplied lines need a minimum count,
generated lines need their generator's entropy, and no line may cost the broker more than a maximum.
"""

from __future__ import annotations

import math
import re
from typing import Iterator

from ..components.credentials import (GENERATED_BITS_ANNOTATION, MAXIMUM_ITERATIONS, MINIMUM_GENERATED_BITS,
                                    SUPPLIED_ANNOTATION, SUPPLIED_ITERATIONS)
from .policy_kit import (MANDATORY, SECRET, as_bool, as_int, as_map, as_text, metadata, object_data, passwd_lines,
                        resource_policy)

RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
HASH_LINE = re.compile(r"^\$7\$(\d+)\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")
CONNECT_SECONDS_PER_ITERATION = 1 / 1.9e6
"""mosquitto's PBKDF2 rate on one core of bench/credential_bench.py's machine (about 1.9 million/s)."""

CLASSES = {"upper": 26, "lower": 26, "numeric": 10}
DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"
"""pulumi-random bridges terraform-provider-random, which draws each character uniformly from the enabled classes,
special ones from this set unless overrideSpecial is given, after first drawing min<Class> characters from each
class alone (hashicorp/terraform-provider-random internal/random/string.go:25-63 at 04572027)."""


def hash_lines(text: str) -> Iterator[tuple[int, str, int | None]]:
    """(line number, user, iteration count or None when the line is not a `$7$` hash) for each passwd line."""
    for number, user, hashed in passwd_lines(text):
        match = HASH_LINE.match(hashed)
        yield number, user, int(match.group(1)) if match else None


def password_hashes(props, cfg):
    """Supplied passwords (named in the Secret's annotation; every line when the Secret does not say how its
    passwords were made) need minimumIterations; the others need a generator of minimumGeneratedBits."""
    text = object_data(props).get("passwd")
    if text is None:
        return
    annotations = as_map(metadata(props).get("annotations"))
    declared = SUPPLIED_ANNOTATION in annotations
    supplied = {u for u in as_text(annotations.get(SUPPLIED_ANNOTATION)).split(",") if u}
    bits = as_int(annotations.get(GENERATED_BITS_ANNOTATION), 0) or 0
    minimum, minimum_bits = cfg["minimumIterations"], cfg["minimumGeneratedBits"]
    for number, user, iterations in hash_lines(text):
        where = f"passwd line {number} ({user})"
        if iterations is None:
            yield f"{where}: not a $7$ PBKDF2-SHA512 hash"
        elif not declared or user in supplied:
            if iterations < minimum:
                how = "a supplied password" if declared else f"no {SUPPLIED_ANNOTATION} annotation, so judged as supplied"
                yield f"{where}: {iterations} PBKDF2 iterations for {how} (minimum {minimum})"
        elif bits < minimum_bits:
            yield (f"{where}: a generated password of {bits} bits ({GENERATED_BITS_ANNOTATION}) hashed with "
                   f"{iterations} iterations; generated passwords need at least {minimum_bits} bits")


def hash_cost(props, cfg):
    text = object_data(props).get("passwd")
    if text is None:
        return
    maximum = cfg["maximumIterations"]
    for number, user, iterations in hash_lines(text):
        if iterations is not None and iterations > maximum:
            yield (f"passwd line {number} ({user}): {iterations} PBKDF2 iterations cost the broker's one thread "
                   f"about {1000 * iterations * CONNECT_SECONDS_PER_ITERATION:.0f} ms per CONNECT, right or "
                   f"wrong (maximum {maximum})")


def password_bits(props) -> float:
    """Entropy of a RandomPassword from its inputs: the min<Class> characters from their class alone, the rest
    from the whole enabled set."""
    enabled = {name: size for name, size in CLASSES.items() if as_bool(props.get(name)) is not False}
    if as_bool(props.get("special")) is not False:
        enabled["special"] = len(set(as_text(props.get("overrideSpecial")) or DEFAULT_SPECIAL))
    length = as_int(props.get("length"), 0) or 0
    minimums = {name: as_int(props.get("min" + name.capitalize()), 0) or 0 for name in enabled}
    free = max(length - sum(minimums.values()), 0)
    total = sum(enabled.values())
    if not total:
        return 0.0
    return free * math.log2(total) + sum(count * math.log2(enabled[name]) for name, count in minimums.items()
                                          if enabled[name] > 1)


def random_password_bits(props, cfg):
    bits = password_bits(as_map(props))
    if bits < cfg["minimumBits"]:
        yield f"generates about {bits:.0f} bits of entropy (at least {cfg['minimumBits']}: raise length)"


POLICIES = [
    resource_policy("broker-password-hashes",
                    "Password files hold $7$ PBKDF2-SHA512 hashes fit for how each password was made: supplied "
                    "passwords with enough iterations, generated ones from a generator with enough entropy.",
                    MANDATORY, "Keep broker.auth.passwordIterations at or above the minimum for supplied passwords; "
                    "let the estate generate device passwords (190 bits).",
                    [SECRET], password_hashes,
                    {"minimumIterations": {"type": "integer", "minimum": 1, "default": SUPPLIED_ITERATIONS},
                     "minimumGeneratedBits": {"type": "integer", "minimum": 1, "default": MINIMUM_GENERATED_BITS}}),
    resource_policy("broker-password-hash-cost",
                    "No password hash costs the broker more than a bounded time per CONNECT: mosquitto hashes every "
                    "password CONNECT, right or wrong, on its one thread, so a high count lets anyone who knows a "
                    "user name stall it.", MANDATORY,
                    "Lower broker.auth.passwordIterations (supplied passwords are protected by their entropy floor).",
                    [SECRET], hash_cost,
                    {"maximumIterations": {"type": "integer", "minimum": 1, "default": MAXIMUM_ITERATIONS}}),
    resource_policy("random-password-entropy",
                    "Generated passwords carry enough entropy that no hash iteration count matters.", MANDATORY,
                    "Raise the RandomPassword's length (32 letters and digits carry 190 bits).",
                    [RANDOM_PASSWORD], random_password_bits,
                    {"minimumBits": {"type": "integer", "minimum": 1, "default": MINIMUM_GENERATED_BITS}}),
]
