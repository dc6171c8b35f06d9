"""AWS IoT Core identity of one cloud bridge: thing, certificate, least-privilege policy, attachments, endpoint.

Written with pulumi-aws resources, not a dynamic provider. A Python dynamic provider is pickled (dill) into the
resource's `__provider` property and run later by the `pulumi-python` dynamic-provider plugin
(pulumi/pulumi sdk/python/lib/pulumi/dynamic/dynamic.py, serialize_provider; unpickled in
sdk/python/lib/pulumi/dynamic/__main__.py, get_provider; the engine treats the `pulumi-python` package as a dynamic
provider in pkg/resource/deploy/target.go). That plugin is started for the *program's* project, so when these
components are served to another language through the component provider it has no Python environment with the
pickled code's modules: "Dynamic providers fail to load when used from multi-lang components",
https://github.com/pulumi/pulumi/issues/5455 (open). pulumi-aws resources registered inside the component provider
are ordinary custom resources handled by the aws plugin, so they work from every language.

Policy resources follow AWS's rules:
- action resources (https://docs.aws.amazon.com/iot/latest/developerguide/iot-action-resources.html):
  iot:Connect -> `client/<client id>`, iot:Publish / iot:Receive / iot:RetainPublish -> `topic/<topic name>`,
  iot:Subscribe -> `topicfilter/<topic filter>`.
- wildcards (https://docs.aws.amazon.com/iot/latest/developerguide/pub-sub-policy.html, "Using wildcard characters
  in MQTT and AWS IoT Core policies", and iot-policy-variables.html): policies use IAM's `*` (any characters) and
  `?` (one character); MQTT's `+` and `#` are literal there. So a `topicfilter/` resource names the filter the
  bridge subscribes exactly (`+`/`#` included, matched literally), and a `topic/` resource replaces each `+`/`#`
  level with `*`.
- topics containing `*` or `?` (legal in MQTT) or `${` (a policy variable) are refused: written as-is they would
  widen the grant (or be substituted). AWS documents fixed-value variables for these characters, but the IoT page
  spells them `$(*)` and IAM's `${*}`, which cannot be checked offline, so refusing is the safe choice.
"""

import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

ENDPOINT_TYPE = "iot:Data-ATS"
POLICY_VERSION = "2012-10-17"
THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
"""AWS IoT CreateThing's thingName pattern and length."""
POLICY_NAME = re.compile(r"[\w+=,.@-]{1,128}")
"""AWS IoT CreatePolicy's policyName pattern and length."""
POLICY_UNSAFE = ("*", "?", "${")


class PolicyError(ValueError):
    """A thing name or topic that cannot be granted exactly in an AWS IoT policy (the message says which)."""


def check_filter(topic: str, what: str = "topic") -> str:
    """`topic` as an MQTT topic filter AWS can grant exactly, or PolicyError: not empty, no NUL, `+`/`#` only as
    whole levels and `#` only last (MQTT 3.1.1 section 4.7), none of the policy's own special characters."""
    if not isinstance(topic, str) or not topic:
        raise PolicyError(f"{what} {topic!r} is empty or not text")
    if "\0" in topic:
        raise PolicyError(f"{what} {topic!r} contains NUL, which MQTT forbids")
    for bad in POLICY_UNSAFE:
        if bad in topic:
            raise PolicyError(
                f"{what} {topic!r} contains {bad!r}, which AWS IoT policies read as a wildcard or variable: the "
                "policy would grant more than this topic (rename the topic)")
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if ("+" in level or "#" in level) and level not in ("+", "#"):
            raise PolicyError(f"{what} {topic!r}: '+' and '#' must be a whole topic level")
        if level == "#" and index != len(levels) - 1:
            raise PolicyError(f"{what} {topic!r}: '#' must be the last level")
    return topic


def topic_resources(topic_filter: str) -> list[str]:
    """The `topic/` resource names (after `topic/`) covering every topic name `topic_filter` matches. MQTT `+` and
    `#` become the policy wildcard `*`, which also matches `/`: a `+` level is widened to any number of levels,
    the tightest AWS can express (a run of `?` would bound the length, not the level). `a/#` also matches `a`
    itself (MQTT 3.1.1 section 4.7.1.2), so it yields `a` and `a/*`."""
    levels = check_filter(topic_filter).split("/")
    if levels[-1] == "#" and len(levels) > 1:
        parent = "/".join("*" if level == "+" else level for level in levels[:-1])
        return [parent, parent + "/*"]
    return ["/".join("*" if level in ("+", "#") else level for level in levels)]


def policy_document(thing_name: str, publish_topics: Sequence[str], subscribe_filters: Sequence[str],
                    partition_region_account: Sequence[str], retain: bool = True) -> str:
    """The least-privilege AWS IoT policy (JSON, sorted keys, deterministic) for a bridge connecting as client id
    `thing_name` that publishes on `publish_topics` (remote topic filters of the `out` mappings) and subscribes to
    `subscribe_filters` (remote filters of the `in` mappings). `partition_region_account`: (partition, region,
    account id) for the ARNs. `retain`: also grant iot:RetainPublish on the publish topics (a mosquitto bridge
    forwards the retain flag, and AWS refuses a retained publish without it)."""
    if not isinstance(thing_name, str) or not THING_NAME.fullmatch(thing_name):
        raise PolicyError(f"thing name {thing_name!r} must be 1 to 128 of a-z A-Z 0-9 : _ -")
    partition, region, account = partition_region_account
    prefix = f"arn:{partition}:iot:{region}:{account}:"
    publish = sorted({prefix + "topic/" + r for t in publish_topics for r in topic_resources(check_filter(t))})
    receive = sorted({prefix + "topic/" + r for f in subscribe_filters for r in topic_resources(check_filter(f))})
    subscribe = sorted({prefix + "topicfilter/" + check_filter(f) for f in subscribe_filters})
    statements = [{"Effect": "Allow", "Action": ["iot:Connect"], "Resource": [prefix + "client/" + thing_name]}]
    if publish:
        actions = ["iot:Publish", "iot:RetainPublish"] if retain else ["iot:Publish"]
        statements.append({"Effect": "Allow", "Action": actions, "Resource": publish})
    if subscribe:
        statements.append({"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": subscribe})
        statements.append({"Effect": "Allow", "Action": ["iot:Receive"], "Resource": receive})
    return json.dumps({"Version": POLICY_VERSION, "Statement": statements}, sort_keys=True, indent=2)


@dataclass
class AwsIotIdentity:
    """What a bridge needs to log into AWS IoT Core."""

    endpoint: pulumi.Output[str]
    """The account's iot:Data-ATS endpoint host name."""
    certificate_arn: pulumi.Output[str]
    thing_arn: pulumi.Output[str]
    policy_name: pulumi.Output[str]
    policy: pulumi.Output[str]
    """The policy document (JSON)."""


def provision_thing(name: str, thing_name: str, certificate_pem: pulumi.Input[str],
                    publish_topics: Sequence[str], subscribe_filters: Sequence[str],
                    opts: Optional[pulumi.ResourceOptions] = None, region: Optional[str] = None,
                    retain: bool = True) -> AwsIotIdentity:
    """Register `certificate_pem` (a self-signed certificate per bridge, registered without a CA) as an active AWS
    IoT certificate of thing `thing_name`, with a policy allowing exactly the bridge's topics. Resources are named
    f"{name}-<role>" and take `opts` (the caller sets the parent). `region`: where (pulumi-aws 7's per-resource
    region); default the provider's. Topic mistakes raise PolicyError before anything registers."""
    policy_document(thing_name, publish_topics, subscribe_filters, ("aws", "region", "000000000000"), retain)
    policy_name = f"{thing_name}-bridge"
    if not POLICY_NAME.fullmatch(policy_name):
        raise PolicyError(f"policy name {policy_name!r} is longer than 128 characters (shorten the thing name)")
    opts = opts or pulumi.ResourceOptions()
    invoke_opts = pulumi.InvokeOutputOptions(parent=opts.parent, provider=opts.provider)
    partition = aws.get_partition_output(opts=invoke_opts).partition
    region_name = aws.get_region_output(region=region, opts=invoke_opts).region
    account = aws.get_caller_identity_output(opts=invoke_opts).account_id
    document = pulumi.Output.all(partition, region_name, account).apply(
        lambda pra: policy_document(thing_name, publish_topics, subscribe_filters, tuple(pra), retain))
    thing = aws.iot.Thing(f"{name}-thing", name=thing_name, region=region, opts=opts)
    certificate = aws.iot.Certificate(f"{name}-certificate", certificate_pem=certificate_pem, active=True,
                                      region=region, opts=opts)
    policy = aws.iot.Policy(f"{name}-policy", name=policy_name, policy=document, region=region, opts=opts)
    aws.iot.PolicyAttachment(f"{name}-policy-attachment", policy=policy.name, target=certificate.arn,
                             region=region, opts=opts)
    aws.iot.ThingPrincipalAttachment(f"{name}-thing-principal", thing=thing.name, principal=certificate.arn,
                                     region=region, opts=opts)
    endpoint = aws.iot.get_endpoint_output(endpoint_type=ENDPOINT_TYPE, region=region, opts=invoke_opts)
    return AwsIotIdentity(endpoint=endpoint.endpoint_address, certificate_arn=certificate.arn, thing_arn=thing.arn,
                          policy_name=policy.name, policy=policy.policy)
