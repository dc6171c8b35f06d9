"""Per-stack secret seed and epoch, so offline renders are real (real keys) and still byte-identical.

Pulumi keeps generated keys and passwords in its state; the offline engine keeps only this seed (mode 0600,
never committed) and derives every key, password and certificate date from it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Seed:
    secret: bytes
    epoch: dt.datetime
    """not-before of every certificate: the moment the seed was made, to the minute."""

    def derive(self, *labels: str, size: int = 32) -> bytes:
        out, counter = b"", 0
        message = "\0".join(labels).encode()
        while len(out) < size:
            out += hmac.new(self.secret, counter.to_bytes(4, "big") + message, hashlib.sha256).digest()
            counter += 1
        return out[:size]

    def rng(self, *labels: str) -> random.Random:
        """A deterministic generator for one resource (never used for anything but offline renders)."""
        return random.Random(int.from_bytes(self.derive(*labels, size=32), "big"))


def load_or_create(path: Path) -> Seed:
    if path.exists():
        data = json.loads(path.read_text())
        return Seed(bytes.fromhex(data["secret"]), dt.datetime.fromisoformat(data["epoch"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    seed = Seed(os.urandom(32), now)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"secret": seed.secret.hex(), "epoch": now.isoformat()}, handle)
    return seed
