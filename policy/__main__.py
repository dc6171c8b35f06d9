"""The mqtt-estate CrossGuard pack: `pulumi preview --policy-pack policy`. The policies live in estate_policies."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a source checkout: mqtt_estate/ sits there

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from mqtt_estate.policy.estate_policies import POLICIES  # noqa: E402

PolicyPack(name="mqtt-estate", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
