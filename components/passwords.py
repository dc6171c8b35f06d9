"""Mosquitto `$7$` password hashes (PBKDF2-HMAC-SHA512), computed in Python so no mosquitto_passwd is needed.

The salt is derived from the estate scope and the user name, never from the password: the same config
renders the same file byte for byte, and a guess still costs the full iteration count. Each line carries its
own iteration count (components/credentials.py says which), as mosquitto reads it per line
(eclipse/mosquitto v2.0.20 src/security_default.c:884-890).
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Mapping

SALT_BYTES = 12
HASH_BYTES = 64


def deterministic_salt(scope: str, username: str) -> bytes:
    return hashlib.sha256(f"mqtt-estate/passwd/v1\0{scope}\0{username}".encode()).digest()[:SALT_BYTES]


@lru_cache(maxsize=None)
def hash_password(password: str, salt: bytes, iterations: int) -> str:
    """One `$7$iterations$salt$hash` field exactly as mosquitto_passwd writes it (computed once per process for
    a given password, salt and count: several brokers of one program share their users' lines)."""
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(derived).decode()}"


def password_file(entries: Mapping[str, tuple[str, int]], scope: str) -> str:
    """The whole password file for {username: (password, iterations)}, sorted by user so diffs stay small."""
    users = sorted(entries)

    def line(user: str) -> str:
        password, iterations = entries[user]
        return f"{user}:{hash_password(password, deterministic_salt(scope, user), iterations)}\n"

    # PBKDF2 releases the GIL, so hashing users side by side uses every core.
    with ThreadPoolExecutor() as pool:
        return "".join(pool.map(line, users))
