"""The credential model: how a password was made decides how it is hashed (README "Passwords: the threat model").

Two costs pull apart. An attacker who steals the password file (an etcd backup, a leaked Secret) pays
guesses x iterations offline, on GPUs. The broker pays the iterations on every password CONNECT, right or
wrong, on its one thread: mosquitto looks the user up and, when it exists, runs PBKDF2 with that line's own
iteration count before it answers (eclipse/mosquitto v2.0.20 src/security_default.c:884-890 reads the count per
line, any value >= 1; 1015-1021 hashes only for a known user name). So iterations are a denial-of-service lever
held by anyone who knows a user name, and they only help a password that can be guessed.

- Generated passwords (pulumi-random, GENERATED_LENGTH letters and digits) carry GENERATED_BITS bits: no
  iteration count changes the odds of guessing one, so they are hashed with mosquitto's own default count.
- Supplied passwords are guessable by definition, so they are hashed with the configured count (default
  SUPPLIED_ITERATIONS) and must be strong enough that guesses x iterations >= WORK_FLOOR (estimated with
  zxcvbn). Raising the iterations lowers the floor but makes every CONNECT dearer; MAXIMUM_ITERATIONS caps it.

bench/credential_bench.py measures both sides on real mosquitto and prints the table behind these numbers.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

GENERATED_LENGTH = 32
GENERATED_ALPHABET = 62
"""RandomPassword with special=False draws from upper, lower and digits: 26 + 26 + 10 characters."""
GENERATED_BITS = int(GENERATED_LENGTH * math.log2(GENERATED_ALPHABET))
"""190 bits: far above the 128 that makes a guess hopeless however fast the hash."""
MINIMUM_GENERATED_BITS = 128
GENERATED_ITERATIONS = 101
"""mosquitto_passwd's own default (eclipse/mosquitto v2.0.20 src/password_mosq.h:29, PW_DEFAULT_ITERATIONS):
about 0.1 ms of the broker's thread per CONNECT (bench/credential_bench.py)."""

SUPPLIED_ITERATIONS = 10_000
"""About 5.5 ms of the broker's thread per CONNECT (bench/credential_bench.py): 50 wrong passwords at once hold
every other client for about 0.3 s, against 5.5 s at 210000."""
MAXIMUM_ITERATIONS = 100_000
"""About 0.1 s per CONNECT: beyond this a handful of wrong passwords per second stalls a broker."""
WORK_FLOOR = 10 ** 19
"""guesses x iterations a supplied password must cost: about 100 years of one RTX 4090 (REFERENCE_GPU_RATE) to
try them all, 50 on average."""
REFERENCE_GPU_RATE = 3.15e9
"""PBKDF2-HMAC-SHA512 iterations per second of one RTX 4090: tobtu.com/minimum-password-settings (2022-12-29)
sets 210,000 iterations so that an attacker gets under 10 kH/s per "GPU", counting an RTX 4090 as 1.5 GPUs:
15,000 x 210,000 = 3.15e9."""
ESTIMATE_LENGTH = 72
"""zxcvbn judges at most this many characters (its own max_length default); a longer password is judged by its
first 72, which can only under-estimate it."""
SUPPLIED_ANNOTATION = "mqtt-estate.io/supplied-passwords"
"""On the auth Secret: comma-separated users whose passwords were supplied (hashed with the configured count);
every other line's password was generated. Lets the policy pack judge each line without seeing a password."""
GENERATED_BITS_ANNOTATION = "mqtt-estate.io/generated-password-bits"
MQTT_PASSWORD_BYTES = 65535
"""MQTT's binary data carries a two-byte length (MQTT 3.1.1 section 1.5.3; 5.0 section 1.5.6)."""


def minimum_guesses(iterations: int) -> float:
    """How many guesses a supplied password must cost at this iteration count."""
    return WORK_FLOOR / iterations


def gpu_years(guesses: float, iterations: int) -> float:
    """Years one reference GPU needs to try `guesses` passwords hashed with `iterations`."""
    return guesses * iterations / REFERENCE_GPU_RATE / (365.25 * 86400)


def supplied_password_problem(user: str, password: str, iterations: int,
                              context: Iterable[str] = ()) -> Optional[str]:
    """Why a password a person chose is not good enough at this iteration count, or None. Never shows it.

    `context` holds words an attacker would try first (estate, namespace, organization, zone names)."""
    if not password:
        return "is empty (mosquitto refuses empty passwords, so the user could never log in)"
    if len(password.encode()) > MQTT_PASSWORD_BYTES:
        return f"is longer than MQTT allows ({MQTT_PASSWORD_BYTES} bytes)"
    if password.lower() == user.lower():
        return "is the user name (choose a passphrase, or remove it and let one be generated)"
    from zxcvbn import zxcvbn  # imported here: only stacks with supplied passwords pay for its dictionaries

    words = [user, "mqtt", "mosquitto", "sparkplug", "broker", *context]
    guesses = float(zxcvbn(password[:ESTIMATE_LENGTH], user_inputs=[w for w in words if w])["guesses"])
    needed = minimum_guesses(iterations)
    if guesses >= needed:
        return None
    return (f"is too easy to guess: about 10^{math.log10(guesses):.0f} guesses (zxcvbn), which one GPU tries in "
            f"{_duration(gpu_years(guesses, iterations))} at {iterations} PBKDF2 iterations; at least "
            f"10^{math.log10(needed):.0f} are needed (a passphrase of 5 or more random words, or 16+ random "
            f"characters; or remove it and let a {GENERATED_BITS}-bit one be generated)")


def _duration(years: float) -> str:
    seconds = years * 365.25 * 86400
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"about {seconds / size:.0f} {unit}"
    return "under a minute"


def hash_iterations(generated: bool, supplied_iterations: int) -> int:
    """The PBKDF2 count of one user's line: by how the password was made."""
    return GENERATED_ITERATIONS if generated else supplied_iterations
