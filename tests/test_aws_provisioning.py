"""AWS IoT Core provisioning of a cloud bridge (components/aws_iot.py), computed by the offline engine against a real
moto_server on 127.0.0.1 (estate/aws_provider.py) and checked there with boto3."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls
import pytest

from mqtt_estate.components.aws_iot import PolicyError, policy_document, provision_thing
from mqtt_estate.estate import aws_provider
from mqtt_estate.estate.engine import EngineError, run_function

from .harness import TEST_SEED

THING = "site-a-cloud-aws"
PUBLISH = ["plant/+/telemetry", "alarms/#", "status"]
SUBSCRIBE = ["cmd/site-a/#", "cfg/+/set"]
ARN = "arn:aws:iot:us-east-1:123456789012:"


@pytest.fixture(scope="module")
def plane():
    control_plane = aws_provider.ControlPlane()
    try:
        yield control_plane.start()
    finally:
        control_plane.stop()


def bridge_program():
    key = tls.PrivateKey("cloud-key", algorithm="ECDSA", ecdsa_curve="P256")
    cert = tls.SelfSignedCert("cloud-cert", private_key_pem=key.private_key_pem, validity_period_hours=24 * 365,
                              subject=tls.SelfSignedCertSubjectArgs(common_name=THING),
                              allowed_uses=["digital_signature", "client_auth"])
    identity = provision_thing("aws", THING, cert.cert_pem, PUBLISH, SUBSCRIBE)
    pulumi.export("endpoint", identity.endpoint)
    pulumi.export("certificateArn", identity.certificate_arn)
    pulumi.export("thingArn", identity.thing_arn)
    pulumi.export("policyName", identity.policy_name)
    pulumi.export("policy", identity.policy)
    pulumi.export("certPem", pulumi.Output.unsecret(cert.cert_pem))


def two_bridges():
    """Two things: their API calls interleave differently run to run (Pulumi registers from several threads)."""
    bridge_program()
    key = tls.PrivateKey("second-key", algorithm="ECDSA", ecdsa_curve="P256")
    cert = tls.SelfSignedCert("second-cert", private_key_pem=key.private_key_pem, validity_period_hours=24,
                              subject=tls.SelfSignedCertSubjectArgs(common_name=THING + "-2"),
                              allowed_uses=["digital_signature", "client_auth"])
    second = provision_thing("aws2", THING + "-2", cert.cert_pem, ["b/#"], ["c/+"])
    pulumi.export("endpoint2", second.endpoint)


def run(body, control_plane=None, config=None):
    return run_function(body, "test", config or {}, [], TEST_SEED, control_plane=control_plane)


def render(registry) -> str:
    """Everything registered, in a fixed order (Pulumi registers from several threads, as renders sort too)."""
    return json.dumps({"resources": sorted([r.type, r.name, r.inputs, r.outputs] for r in registry.resources),
                       "outputs": registry.stack_outputs}, sort_keys=True)


def test_bridge_identity_is_provisioned_in_the_control_plane(plane):
    registry = run(bridge_program, plane)
    out = registry.stack_outputs
    iot = plane.client("iot")

    thing = iot.describe_thing(thingName=THING)
    assert thing["thingArn"] == out["thingArn"] == f"{ARN}thing/{THING}"

    cert_id = out["certificateArn"].rsplit("/", 1)[1]
    described = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert described["status"] == "ACTIVE"
    assert described["certificatePem"] == out["certPem"]
    assert "caCertificateId" not in described  # registered without a CA

    attached = iot.list_attached_policies(target=out["certificateArn"])["policies"]
    assert [p["policyName"] for p in attached] == [out["policyName"]]
    stored = iot.get_policy(policyName=out["policyName"])["policyDocument"]
    assert stored == out["policy"]
    grants = {(action, resource) for statement in json.loads(stored)["Statement"]
              for action in statement["Action"] for resource in statement["Resource"]}
    assert all(s["Effect"] == "Allow" for s in json.loads(stored)["Statement"])
    assert grants == {
        ("iot:Connect", f"{ARN}client/{THING}"),
        *{(action, f"{ARN}topic/{t}") for action in ("iot:Publish", "iot:RetainPublish")
          for t in ("plant/*/telemetry", "alarms", "alarms/*", "status")},
        ("iot:Subscribe", f"{ARN}topicfilter/cmd/site-a/#"), ("iot:Subscribe", f"{ARN}topicfilter/cfg/+/set"),
        ("iot:Receive", f"{ARN}topic/cmd/site-a"), ("iot:Receive", f"{ARN}topic/cmd/site-a/*"),
        ("iot:Receive", f"{ARN}topic/cfg/*/set"),
    }
    assert not any(resource.endswith(":*") or resource == "*" or action.endswith(":*") or action == "*"
                   for action, resource in grants)

    assert iot.list_thing_principals(thingName=THING)["principals"] == [out["certificateArn"]]

    # describe_endpoint gives a new prefix on every call: the output is the one address described in that run,
    # in the state the engine seeded moto to for it
    plane.seed(aws_provider.Session(TEST_SEED, {}).number("endpoint", "us-east-1", "iot:Data-ATS"))
    assert out["endpoint"] == iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert out["endpoint"].endswith("-ats.iot.us-east-1.amazonaws.com")


def test_renders_are_identical_run_to_run_and_the_engine_stops_its_control_plane(plane, monkeypatch):
    started = []
    original = aws_provider.ControlPlane.start

    def start(self):
        started.append(self)
        return original(self)

    monkeypatch.setattr(aws_provider.ControlPlane, "start", start)
    operations = []
    call = aws_provider.Session.call

    def counted(self, what, service, region, operation, **params):
        operations.append(operation)
        return call(self, what, service, region, operation, **params)

    monkeypatch.setattr(aws_provider.Session, "call", counted)
    first, second = render(run(two_bridges)), render(run(two_bridges))  # each starts a moto_server
    assert first == second
    assert json.loads(first)["outputs"]["endpoint"] == json.loads(first)["outputs"]["endpoint2"]  # described once
    assert operations.count("describe_endpoint") == 2  # once per run (moto gives a new prefix on each call)
    assert render(run(two_bridges, plane)) == first  # a supplied control plane is reset, then seeded the same
    assert len(started) == 3 and all(p.process is None for p in started[:2])  # the engine's own ones stopped
    assert plane.process is not None and plane.process.poll() is None  # the supplied one keeps running

    def failing():
        bridge_program()
        raise RuntimeError("the program fails after registering")

    with pytest.raises(Exception, match="fails after registering"):
        run(failing)
    assert started[-1].process is None


def test_a_csr_is_refused_offline_in_one_line():
    def program():
        aws.iot.Certificate("bridge-cert", csr="-----BEGIN CERTIFICATE REQUEST-----\n...", active=True)

    with pytest.raises(EngineError) as caught:
        run(program)
    assert len(caught.value.problems) == 1 and "\n" not in caught.value.problems[0]
    problem = caught.value.problems[0]
    assert problem.startswith("aws:iot/certificate:Certificate resource 'bridge-cert' has a problem: csr ")
    assert "discards the CSR's key" in problem


def test_an_unknown_region_names_the_invoke():
    def program():
        pulumi.export("endpoint", aws.iot.get_endpoint_output(endpoint_type="iot:Data-ATS").endpoint_address)

    with pytest.raises(EngineError) as caught:
        run(program, config={"aws:region": "mars-north-1"})
    assert caught.value.problems == [
        "invoke aws:iot/getEndpoint:getEndpoint has a problem: region 'mars-north-1' is not an AWS region"]


@pytest.mark.parametrize("topic", ["plant/*", "plant/sensor?", "a/${iot:ClientId}", "a/b#", "a/+b", "#/a", "",
                                   "a\0b"])
def test_a_mapping_topic_cannot_widen_the_policy(topic):
    with pytest.raises(PolicyError):
        policy_document(THING, [topic], [], ("aws", "us-east-1", "123456789012"))
    with pytest.raises(PolicyError):
        policy_document(THING, [], [topic], ("aws", "us-east-1", "123456789012"))
    with pytest.raises(PolicyError):  # before anything registers
        provision_thing("aws", THING, "pem", [], [topic])


def test_quotes_in_a_topic_stay_inside_their_resource():
    sneaky = 'a"]},{"Effect":"Allow","Action":["iot:Connect"],"Resource":["arn:aws:iot:us-east-1:1:client/x'
    document = json.loads(policy_document(THING, [sneaky], [], ("aws", "us-east-1", "123456789012")))
    assert [s["Action"] for s in document["Statement"]] == [["iot:Connect"], ["iot:Publish", "iot:RetainPublish"]]
    assert document["Statement"][1]["Resource"] == [f"{ARN}topic/{sneaky}"]
    with pytest.raises(PolicyError):
        policy_document('x"', [], [], ("aws", "us-east-1", "123456789012"))  # not a thing name


def test_policy_is_deterministic_and_standin_acl_round_trips():
    args = (THING, PUBLISH, SUBSCRIBE, ("aws", "us-east-1", "123456789012"))
    document = policy_document(*args)
    assert document == policy_document(THING, list(reversed(PUBLISH)), list(reversed(SUBSCRIBE)), args[3])
    assert aws_provider.standin_acl(document, THING) == sorted(
        [("write", t) for t in PUBLISH] + [("read", f) for f in SUBSCRIBE])
    assert aws_provider.standin_acl(document, "another-thing") == []  # it could not even connect
    assert aws_provider.standin_acl(policy_document(THING, ["#"], ["+"], args[3]), THING) == [
        ("read", "#"), ("read", "+"), ("write", "#")]  # `topic/*` for a lone `+` widens to `#` (documented)


def test_region_comes_from_the_resource_its_provider_or_the_stack(plane):
    def program():
        ireland = aws.Provider("ireland", region="eu-west-1")
        bound = pulumi.ResourceOptions(provider=ireland)
        pulumi.export("ireland", aws.iot.Thing("in-ireland", name="a", opts=bound).arn)
        pulumi.export("own", aws.iot.Thing("own-region", name="b", region="ap-south-1", opts=bound).arn)
        pulumi.export("stack", aws.iot.Thing("stack-region", name="c").arn)
        pulumi.export("endpoint", aws.iot.get_endpoint_output(
            endpoint_type="iot:Data-ATS", opts=pulumi.InvokeOutputOptions(provider=ireland)).endpoint_address)
        pulumi.export("region", aws.get_region_output().description)

    out = run(program, plane, config={"aws:region": "us-west-2"}).stack_outputs
    assert out["ireland"] == "arn:aws:iot:eu-west-1:123456789012:thing/a"
    assert out["own"] == "arn:aws:iot:ap-south-1:123456789012:thing/b"
    assert out["stack"] == "arn:aws:iot:us-west-2:123456789012:thing/c"
    assert out["endpoint"].endswith("-ats.iot.eu-west-1.amazonaws.com")
    assert out["region"] == "US West (Oregon)"
