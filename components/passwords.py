"""Mosquitto `$7$` password hashes (PBKDF2-HMAC-SHA512), computed in Python so no mosquitto_passwd is needed.

The salt is derived from the estate scope and the user name, never from the password: the same config
renders the same file byte for byte, and a guess still costs the full iteration count.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor

SALT_BYTES = 12
HASH_BYTES = 64


def deterministic_salt(scope: str, username: str) -> bytes:
    return hashlib.sha256(f"mqtt-estate/passwd/v1\0{scope}\0{username}".encode()).digest()[:SALT_BYTES]


def hash_password(password: str, salt: bytes, iterations: int) -> str:
    """One `$7$iterations$salt$hash` field exactly as mosquitto_passwd writes it."""
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(derived).decode()}"


def password_file(entries: dict[str, str], scope: str, iterations: int) -> str:
    """The whole password file for {username: password}, sorted by user so diffs stay small."""
    users = sorted(entries)
    # PBKDF2 releases the GIL, so hashing users side by side uses every core.
    with ThreadPoolExecutor() as pool:
        hashes = pool.map(lambda u: hash_password(entries[u], deterministic_salt(scope, u), iterations), users)
        return "".join(f"{user}:{digest}\n" for user, digest in zip(users, hashes))
