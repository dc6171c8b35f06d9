"""A broker's users and ACL rules as component arguments: plain dicts, typed for Python and for the provider schema.

These classes are read by Pulumi's component analyzer (components/provider.py), which turns each field and the
string right below it into a schema property and its description, so: no `from __future__ import annotations`
(the analyzer needs real types, not strings), no tuples, unions or bare dicts, and a docstring under every field.
"""

from typing import Optional, Sequence, TypedDict

import pulumi
from typing_extensions import Required

MAX_ROTATION = 100_000
"""The largest rotation count a user may have (one rotation a day for over 270 years)."""


class AclRule(TypedDict):
    """One mosquitto ACL line: what a client may do on a topic filter."""

    access: str
    """read, write, readwrite or deny."""
    topic: str
    """MQTT topic filter (`+` and `#` wildcards; in acl patterns also `%u` for the user name, `%c` for the client
    id)."""


class BrokerUser(TypedDict, total=False):
    """A user of the broker: its login, its ACL role and templates, and its own extra rules."""

    name: Required[str]
    """Login name (the certificate CN for certificate users); unique within a broker."""
    role: str
    """admin, device, edge-node, host-application, dashboard, service or bridge (a broker's own bridge); default
    device."""
    zone: Optional[str]
    """Factory zone the device belongs to (factory ACL template)."""
    groups: Sequence[str]
    """Sparkplug group ids the user takes part in (Sparkplug ACL template)."""
    topics: Sequence[AclRule]
    """Extra ACL rules of this user, written as given."""
    password: Optional[pulumi.Input[str]]
    """Secret password; when absent and the user logs in by password, pulumi-random generates one."""
    password_login: bool
    """Whether the user is in the password file (default True; False for certificate-only users)."""
    rotation: int
    """How many times the generated password was rotated (default 0): above 0 it is the RandomPassword's keepers
    value, so raising it makes pulumi-random generate a new password. No effect on a supplied password."""
