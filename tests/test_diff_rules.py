"""estate diff's rules, one test each, on small objects: every rule of estate/provider_diff.py that decides
create / update / replace (and in which order) / delete and whether pods roll. The provider source each rule
copies is cited beside the rule (pulumi/pulumi-kubernetes provider/pkg/provider/diff.go and provider.go)."""

from __future__ import annotations

import base64
import copy

import pytest

from mqtt_estate.estate.engine import Registered, Registry
from mqtt_estate.estate.preview import as_json, markdown, steps, text
from mqtt_estate.estate.provider_diff import (CREATE, DELETE, REPLACE, SAME, UPDATE, ProviderOptions, diff_resource,
                                              plan)

URN = "urn:pulumi:s::p::kubernetes:{type}::r"
TYPES = {"StatefulSet": "apps/v1:StatefulSet", "Deployment": "apps/v1:Deployment", "Secret": "core/v1:Secret",
         "ConfigMap": "core/v1:ConfigMap", "Service": "core/v1:Service", "Pod": "core/v1:Pod",
         "Namespace": "core/v1:Namespace", "RoleBinding": "rbac.authorization.k8s.io/v1:RoleBinding",
         "PodDisruptionBudget": "policy/v1:PodDisruptionBudget"}


def res(obj: dict, type_: str = "", secret: bool = False) -> Registered:
    kind_type = type_ or f"kubernetes:{TYPES[obj['kind']]}"
    return Registered(urn=URN.format(type=kind_type.split(':', 1)[1]), type=kind_type, name="r", parent=None,
                      custom=True, inputs=copy.deepcopy(obj), outputs={}, secret=secret)


def verdict(old: dict, new: dict, options: ProviderOptions = ProviderOptions(), type_: str = ""):
    return diff_resource(res(old, type_), res(new, type_), options)


def sts(**spec) -> dict:
    base = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "b", "namespace": "mqtt"},
            "spec": {"serviceName": "b-headless", "selector": {"matchLabels": {"app": "b"}},
                     "updateStrategy": {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {"app": "b"}},
                                  "spec": {"containers": [{"name": "mosquitto", "image": "eclipse-mosquitto:2.0.20"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "resources": {"requests": {"storage": "20Gi"}}}}]}}
    base["spec"].update(spec)
    return base


def secret(data: dict, **extra) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b-auth", "namespace": "mqtt"},
            "type": "Opaque", "stringData": data, **extra}


def config_map(data: dict, name: str = "b-config", **extra) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "mqtt"}, "data": data,
            **extra}


def with_image(obj: dict, image: str) -> dict:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return out


# -- identity ----------------------------------------------------------------------------------------------------

def test_a_new_name_is_a_create_before_delete_replacement():
    """diff.go:207-212: metadata.name is force-new; provider.go:1645-1658: names differ, so the new one first."""
    change = verdict(config_map({"a": "1"}, "b-config-1111"), config_map({"a": "2"}, "b-config-2222"))
    assert change.action == REPLACE and not change.delete_before_replace
    assert change.previous_name == "b-config-1111"


def test_a_replacement_that_keeps_its_name_deletes_first():
    change = verdict(sts(), sts(serviceName="other"))
    assert change.action == REPLACE and change.delete_before_replace
    assert [r.force_new for r in change.reasons] == [".spec.serviceName"]


def test_an_autonamed_object_adopts_its_old_name_and_is_never_deleted_first():
    """metadata/naming.go:56-65: no name given -> the previous autoname is kept; so a replacement creates first."""
    old = config_map({"a": "1"}, "")
    old["metadata"] = {"name": "b-config-x1y2", "namespace": "mqtt", "annotations": {"pulumi.com/autonamed": "true"}}
    new = config_map({"a": "2"})
    new["metadata"] = {"namespace": "mqtt"}
    change = verdict(old, new)
    assert change.action == REPLACE and not change.delete_before_replace and change.previous_name is None


# -- Secret and ConfigMap mutability --------------------------------------------------------------------------------

def test_secret_data_replaces_unless_secrets_are_mutable():
    """diff.go:28-29 with provider.go:712-726 (enableSecretMutable)."""
    old, new = secret({"passwd": "a"}), secret({"passwd": "b"})
    assert verdict(old, new).action == REPLACE
    assert verdict(old, new, ProviderOptions(enable_secret_mutable=True)).action == UPDATE


def test_an_immutable_secret_replaces_even_when_secrets_are_mutable():
    """clients/clients.go:334-337: `immutable: true` wins over the provider option."""
    change = verdict(secret({"a": "1"}, immutable=True), secret({"a": "2"}, immutable=True),
                     ProviderOptions(enable_secret_mutable=True))
    assert change.action == REPLACE


def test_a_secret_type_change_always_replaces():
    """diff.go:155-157: Secret `.type` is force-new whatever the option."""
    change = verdict(secret({"a": "1"}), {**secret({"a": "1"}), "type": "kubernetes.io/tls"},
                     ProviderOptions(enable_secret_mutable=True))
    assert change.action == REPLACE and {r.force_new for r in change.reasons} == {".type"}


def test_configmap_data_replaces_unless_configmaps_are_mutable():
    """diff.go:32-33 (enableConfigMapMutable)."""
    old, new = config_map({"a": "1"}), config_map({"a": "2"})
    assert verdict(old, new).action == REPLACE
    assert verdict(old, new, ProviderOptions(enable_configmap_mutable=True)).action == UPDATE


def test_string_data_and_the_same_data_encoded_are_equal():
    """clients/unstructured.go:117-155: stringData is encoded into data before comparing."""
    old = secret({"a": "x"})
    new = {**secret({}), "data": {"a": base64.b64encode(b"x").decode()}}
    del new["stringData"]
    assert verdict(old, new).action == SAME


# -- workloads and pod rolls ----------------------------------------------------------------------------------------

def test_a_claim_template_change_replaces_the_statefulset():
    """diff.go:196-205: volumeClaimTemplates are force-new (Kubernetes refuses the update)."""
    change = verdict(sts(), sts(volumeClaimTemplates=[{"metadata": {"name": "data"}, "spec": {
        "resources": {"requests": {"storage": "50Gi"}}}}]))
    assert change.action == REPLACE and change.delete_before_replace
    assert {r.force_new for r in change.reasons} == {".spec.volumeClaimTemplates"}
    assert change.rolls_pods  # Foreground deletion (the default) takes the pods with it


def test_an_orphaning_replacement_rolls_only_when_the_template_changes():
    """metadata/overrides.go:68-79: deletionPropagationPolicy orphan keeps the pods; the new StatefulSet adopts
    them, and rolls them only if its template differs."""
    old = sts()
    old["metadata"]["annotations"] = {"pulumi.com/deletionPropagationPolicy": "orphan"}
    bigger = copy.deepcopy(old)
    bigger["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "50Gi"
    assert verdict(old, bigger).action == REPLACE and not verdict(old, bigger).rolls_pods
    assert verdict(old, with_image(bigger, "eclipse-mosquitto:2.0.21")).rolls_pods


def test_a_template_change_updates_in_place_and_rolls():
    change = verdict(sts(), with_image(sts(), "eclipse-mosquitto:2.0.21"))
    assert change.action == UPDATE and change.rolls_pods


def test_on_delete_strategy_never_rolls_on_update():
    old, new = sts(updateStrategy={"type": "OnDelete"}), with_image(sts(updateStrategy={"type": "OnDelete"}), "x:1")
    assert verdict(old, new).action == UPDATE and not verdict(old, new).rolls_pods


def test_a_replica_count_change_is_an_update_without_a_roll():
    change = verdict(sts(), sts(replicas=3))
    assert change.action == UPDATE and not change.rolls_pods


def test_a_deployment_selector_change_replaces_it():
    """diff.go:171-176."""
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "f", "namespace": "mqtt"},
           "spec": {"selector": {"matchLabels": {"app": "f"}}, "template": {"spec": {"containers": []}}}}
    moved = copy.deepcopy(dep)
    moved["spec"]["selector"]["matchLabels"]["app"] = "g"
    assert verdict(dep, moved).action == REPLACE


def test_a_bare_pod_replaces_for_a_new_image():
    """diff.go:119-151: a Pod's containers' images are force-new (a workload's template is not)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "mqtt"},
           "spec": {"containers": [{"name": "c", "image": "a:1"}]}}
    newer = copy.deepcopy(pod)
    newer["spec"]["containers"][0]["image"] = "a:2"
    assert {r.force_new for r in verdict(pod, newer).reasons} == {".spec.containers[*].image"}


def test_a_patch_resource_replaces_only_for_a_new_identity():
    """provider.go:1559-1566 with kinds/util.go:9-13: `<Kind>Patch` resources update in place."""
    change = verdict(sts(), sts(serviceName="other"), type_="kubernetes:apps/v1:StatefulSetPatch")
    assert change.action == UPDATE


# -- other kinds ----------------------------------------------------------------------------------------------------

def test_a_service_cluster_ip_replaces_it_its_ports_do_not():
    """diff.go:158-160."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "mqtt"},
           "spec": {"clusterIP": "None", "ports": [{"port": 1883}]}}
    assert verdict(svc, {**svc, "spec": {**svc["spec"], "clusterIP": "10.0.0.1"}}).action == REPLACE
    assert verdict(svc, {**svc, "spec": {**svc["spec"], "ports": [{"port": 8883}]}}).action == UPDATE


def test_a_policy_v1_pdb_updates_in_place():
    """diff.go:62-64 lists only policy/v1beta1."""
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b", "namespace": "mqtt"},
           "spec": {"maxUnavailable": 1}}
    assert verdict(pdb, {**pdb, "spec": {"maxUnavailable": 2}}).action == UPDATE
    old, new = {**pdb, "apiVersion": "policy/v1beta1"}, {**pdb, "apiVersion": "policy/v1beta1", "spec": {"maxUnavailable": 2}}
    assert verdict(old, new, type_="kubernetes:policy/v1beta1:PodDisruptionBudget").action == REPLACE


def test_a_role_binding_role_ref_replaces_it():
    """diff.go:192-194."""
    rb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
          "metadata": {"name": "rb", "namespace": "mqtt"}, "roleRef": {"name": "a"}}
    assert verdict(rb, {**rb, "roleRef": {"name": "b"}}).action == REPLACE


def test_an_empty_namespace_is_the_default_one_and_cluster_kinds_have_none():
    """provider.go:1511-1519."""
    cm = config_map({"a": "1"})
    assert verdict({**cm, "metadata": {"name": "b-config", "namespace": ""}},
                   {**cm, "metadata": {"name": "b-config", "namespace": "default"}}).action == SAME
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mqtt"}}
    assert verdict(ns, {**ns, "metadata": {"name": "mqtt", "namespace": "x"}}).action == SAME


def test_numbers_compare_by_value_booleans_by_identity():
    """provider.go:3225-3250: 1 and 1.0 are equal; true and 1 are not."""
    assert verdict(sts(replicas=1), sts(replicas=1.0)).action == SAME
    assert verdict(sts(replicas=1), sts(replicas=True)).action == UPDATE


def test_created_and_deleted_resources():
    old = Registry([res(config_map({"a": "1"}, "gone"))])
    kept = res(secret({"a": "1"}))
    assert [c.action for c in plan(Registry([kept]), Registry([kept]))] == [SAME]
    changes = plan(old, Registry([kept]))
    assert sorted(c.action for c in changes) == [CREATE, DELETE]


# -- what is shown ----------------------------------------------------------------------------------------------------

def test_secret_values_are_never_shown_in_any_format():
    old = Registry([res(secret({"passwd": "admin:$7$101$old-hash"}), secret=True)])
    new = Registry([res(secret({"passwd": "admin:$7$101$new-hash"}), secret=True)])
    found = steps(old, new, {"enableSecretMutable": "true"})
    for output in (text(found, "t"), markdown(found, "t"), as_json(found)):
        assert "hash" not in output and "[secret]" in output
    assert found[0].change.action == UPDATE


@pytest.mark.parametrize("render", [text, markdown])
def test_no_change_says_so(render):
    same = Registry([res(config_map({"a": "1"}))])
    output = render(steps(same, same), "t")
    assert ("1 unchanged" in output) and ("Pods that restart: none" in output or "No pod restarts" in output)
