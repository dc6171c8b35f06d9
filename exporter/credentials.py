"""Expiry times of what a pod authenticates with: certificates read from their mounted files at each scrape
(a renewed Secret shows at once), and tokens whose expiry the deployment states (an Azure SAS token)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from cryptography import x509
from prometheus_client.core import GaugeMetricFamily

EXPIRY = "mqtt_estate_credential_expiry_timestamp_seconds"


@dataclass(frozen=True)
class CredentialFile:
    name: str
    path: Optional[Path] = None
    """A PEM file: every certificate in it is reported (a bundle: the earliest expiry)."""
    expires_at: Optional[float] = None
    """Or a stated expiry (Unix time), for a token."""

    @staticmethod
    def parse(spec: str) -> "CredentialFile":
        """`name=/path/to.pem`, or a stated expiry: `name=@1767225600` (Unix time) or `name=@2026-12-01T00:00:00Z`."""
        name, sep, where = spec.partition("=")
        if not sep or not name or not where:
            raise ValueError(f"--credential {spec!r}: expected NAME=PATH or NAME=@UNIXTIME")
        if where.startswith("@"):
            when = where[1:]
            try:
                return CredentialFile(name, expires_at=float(when))
            except ValueError:
                stamp = datetime.fromisoformat(when)
                if stamp.tzinfo is None:
                    raise ValueError(f"--credential {spec!r}: the time needs a zone (Z or +00:00)") from None
                return CredentialFile(name, expires_at=stamp.timestamp())
        return CredentialFile(name, path=Path(where))

    def expiry(self) -> Optional[float]:
        if self.expires_at is not None:
            return self.expires_at
        try:
            certs = x509.load_pem_x509_certificates(self.path.read_bytes())
        except (OSError, ValueError):
            return None                    # absent or unreadable: no sample, so an absent() alert can see it
        return min(cert.not_valid_after_utc.timestamp() for cert in certs)


def expiry_metric(credentials: list[CredentialFile]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(EXPIRY, "When a certificate or token the pod uses expires (Unix time)",
                               labels=["credential"])
    for cred in credentials:
        when = cred.expiry()
        if when is not None:
            family.add_metric([cred.name], when)
    return family
