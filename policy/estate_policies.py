"""Every policy of the pack, in one list: broker, credential, Kubernetes, PKI, frontend, bridge and backup rules."""

from . import rules_backup
from . import rules_bridge
from . import rules_broker
from . import rules_credentials
from . import rules_frontend
from . import rules_kubernetes
from . import rules_pki

POLICIES = (rules_broker.POLICIES + rules_credentials.POLICIES + rules_kubernetes.POLICIES + rules_pki.POLICIES
            + rules_frontend.POLICIES + rules_bridge.POLICIES + rules_backup.POLICIES)
