"""Every policy of the pack, in one list: broker, credential, Kubernetes, PKI, frontend and bridge rules."""

import rules_broker
import rules_credentials
import rules_frontend
import rules_kubernetes
import rules_pki

POLICIES = (rules_broker.POLICIES + rules_credentials.POLICIES + rules_kubernetes.POLICIES + rules_pki.POLICIES
            + rules_frontend.POLICIES)
