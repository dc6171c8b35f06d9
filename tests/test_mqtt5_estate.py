"""MQTT 5 through the HA estate, with the two sides of every exchange on different brokers, beside a single plain
mosquitto in the same run (tests/mqtt5_kit.py): each scenario runs on both, and the estate must answer as the
single broker does.

The estate is tests/stacks/ha.yaml on 127.0.0.1: three mosquitto brokers bridged into a star with MQTT 5 bridges
(components/mosquitto_conf.py, render_bridge) behind two HAProxy replicas, plus shared-subscription ports.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.mqtt5_kit import (Estate, PlainMosquitto, Target, V5Client, booted_estate, plain_mosquitto,
                              publish_properties, wait_for)

from tests.test_ha_integration import _need_binaries  # noqa: F401 (autouse fixture: mosquitto and haproxy)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    with plain_mosquitto(tmp_path_factory.mktemp("plain")) as broker:
        yield broker


@pytest.fixture(scope="module", params=["ha", "ha-standby"])
def estate(request, rendered, tmp_path_factory):
    """The estate in both topologies: active-active (sides pinned to different brokers) and active-standby."""
    with booted_estate(rendered(request.param), tmp_path_factory.mktemp(f"mqtt5-{request.param}"),
                       standby=request.param == "ha-standby") as booted:
        yield booted


@pytest.fixture
def fresh_estate(rendered, tmp_path):
    """An estate of its own, for tests that kill brokers."""
    with booted_estate(rendered("ha"), tmp_path) as booted:
        yield booted


SINGLE_ANSWERS: dict = {}


def both(single: PlainMosquitto, estate: Estate, scenario, *args):
    """The scenario's answer on the single broker (asked once per run, for both topologies) and through the
    estate."""
    key = (scenario.__name__, args)
    if key not in SINGLE_ANSWERS:
        SINGLE_ANSWERS[key] = scenario(single, *args)
    return SINGLE_ANSWERS[key], scenario(estate, *args)


def topic(kind: str) -> str:
    return f"ha/mqtt5/{kind}/{uuid.uuid4().hex[:8]}"


def settle(target: Target, seconds: float = 0.5) -> None:
    """Anything extra (a duplicate, an echo, a loop) would arrive within this."""
    time.sleep(seconds + target.bridge_delay)


# --- properties --------------------------------------------------------------------------------------

ALL_PROPERTIES = dict(PayloadFormatIndicator=1, ContentType="application/json", ResponseTopic="ha/mqtt5/reply/x",
                      CorrelationData=b"\x00\x01req-42", UserProperty=[("site", "plant-7"), ("line", "3"),
                                                                          ("site", "again")])


def scenario_properties(target: Target) -> dict:
    sub, pub = target.client("b2", "prop-sub"), target.client("b1", "prop-pub")
    name = topic("props")
    sub.subscribe(name, 1)
    time.sleep(target.bridge_delay)
    pub.publish(name, b'{"t": 21.5}', 1, properties=publish_properties(MessageExpiryInterval=600, **ALL_PROPERTIES))
    wait_for(lambda: sub.received, 5)
    settle(target)
    sub.stop(), pub.stop()
    got = [dict(m["properties"]) for m in sub.received]
    for props in got:  # the remaining lifetime, not the exact second: it counts down while the message travels
        props["MessageExpiryInterval"] = 590 <= props.get("MessageExpiryInterval", 0) <= 600
    return {"count": len(got), "properties": got}


def test_every_publish_property_crosses_brokers(single, estate):
    """User properties (order and repeats kept), response topic, correlation data, content type, payload format
    and the message expiry interval reach a subscriber on another broker exactly as on one broker."""
    on_single, on_estate = both(single, estate, scenario_properties)
    expected = {**ALL_PROPERTIES, "UserProperty": list(ALL_PROPERTIES["UserProperty"]), "MessageExpiryInterval": True}
    assert on_single == {"count": 1, "properties": [expected]}
    assert on_estate == on_single


def scenario_request_response(target: Target) -> dict:
    """MQTT 5 request/response: the requester names its reply topic and a correlation id, the responder answers."""
    requester, responder = target.client("b1", "requester"), target.client("b2", "responder")
    reply_to, requests = topic("reply"), topic("req")
    requester.subscribe(reply_to, 1)
    responder.c.on_message = lambda _c, _u, m: responder.c.publish(
        m.properties.ResponseTopic, b"answer:" + m.payload, qos=1,
        properties=publish_properties(CorrelationData=m.properties.CorrelationData))
    responder.subscribe(requests, 1)
    time.sleep(target.bridge_delay)
    for i in range(3):
        requester.publish(requests, f"q{i}".encode(), 1,
                          properties=publish_properties(ResponseTopic=reply_to, CorrelationData=f"id-{i}".encode()))
    wait_for(lambda: len(requester.received) >= 3, 5)
    settle(target)
    requester.stop(), responder.stop()
    return {"answers": sorted((m["properties"].get("CorrelationData"), m["payload"]) for m in requester.received)}


def test_request_response_between_brokers(single, estate):
    on_single, on_estate = both(single, estate, scenario_request_response)
    assert on_single == {"answers": [(f"id-{i}".encode(), f"answer:q{i}".encode()) for i in range(3)]}
    assert on_estate == on_single


# --- expiry ------------------------------------------------------------------------------------------

def scenario_message_expiry_offline(target: Target) -> dict:
    """A subscriber with a session goes away; messages with a 1 s and a 600 s lifetime are published on another
    broker; 3 s later the subscriber comes back: only the long-lived one may be delivered."""
    sub = target.client("b2", "expiry-sub", clean_start=False, session_expiry=300)
    name = topic("expiry")
    sub.subscribe(name, 1)
    sub.stop()
    pub = target.client("b1", "expiry-pub")
    time.sleep(target.bridge_delay)
    pub.publish(name, b"short", 1, properties=publish_properties(MessageExpiryInterval=1))
    pub.publish(name, b"long", 1, properties=publish_properties(MessageExpiryInterval=600))
    pub.stop()
    time.sleep(3)
    back = target.client("b2", "expiry-sub", client_id=sub.client_id, clean_start=False, session_expiry=300)
    wait_for(lambda: back.received, 5)
    settle(target)
    back.stop()
    remaining = [m["properties"].get("MessageExpiryInterval") for m in back.received]
    return {"session_present": back.session_present, "payloads": back.payloads(),
            "remaining_counts_down": all(r is not None and r <= 597 for r in remaining)}


def test_message_expiry_is_honoured_in_offline_queues_across_brokers(single, estate):
    on_single, on_estate = both(single, estate, scenario_message_expiry_offline)
    assert on_single == {"session_present": True, "payloads": [b"long"], "remaining_counts_down": True}
    assert on_estate == on_single


def scenario_session_expiry(target: Target) -> dict:
    """Two offline sessions on one broker, publishing on another: a 2 s session is gone after 4 s (no session,
    nothing queued), a 300 s one is kept with its message."""
    name = topic("session")
    lifetimes = {"short": 2, "long": 300}
    ids = {}
    for kind, lifetime in lifetimes.items():
        client = target.client("b2", kind, clean_start=False, session_expiry=lifetime)
        client.subscribe(name, 1)
        client.stop()
        ids[kind] = client.client_id
    pub = target.client("b1", "sess-pub")
    time.sleep(target.bridge_delay)
    pub.publish(name, b"while-away", 1)
    pub.stop()
    time.sleep(4)
    result = {}
    for kind, client_id in ids.items():
        back = target.client("b2", kind, client_id=client_id, clean_start=False, session_expiry=lifetimes[kind])
        settle(target)
        back.stop()
        result[kind] = {"session_present": back.session_present, "payloads": back.payloads()}
    return result


def test_session_expiry_across_brokers(single, estate):
    on_single, on_estate = both(single, estate, scenario_session_expiry)
    assert on_single == {"short": {"session_present": False, "payloads": []},
                         "long": {"session_present": True, "payloads": [b"while-away"]}}
    assert on_estate == on_single


# --- wills -------------------------------------------------------------------------------------------

def scenario_will_properties(target: Target) -> dict:
    name = topic("will")
    sub = target.client("b2", "will-sub")
    sub.subscribe(name, 1)
    will_props = publish_properties(ContentType="text/plain", ResponseTopic="ha/mqtt5/will-reply",
                                    CorrelationData=b"w-1", UserProperty=[("reason", "power-loss")])
    will_props.MessageExpiryInterval = 600
    device = target.client("b1", "will-dev", will=(name, b"offline", will_props))
    time.sleep(target.bridge_delay)
    device.drop()
    wait_for(lambda: sub.received, 5)
    settle(target)
    sub.stop()
    got = []
    for m in sub.received:
        props = dict(m["properties"])
        props["MessageExpiryInterval"] = 590 <= props.get("MessageExpiryInterval", 0) <= 600
        got.append((m["payload"], props))
    return {"wills": got}


def test_will_properties_cross_brokers(single, estate):
    on_single, on_estate = both(single, estate, scenario_will_properties)
    assert on_single == {"wills": [(b"offline", {
        "ContentType": "text/plain", "ResponseTopic": "ha/mqtt5/will-reply", "CorrelationData": b"w-1",
        "UserProperty": [("reason", "power-loss")], "MessageExpiryInterval": True})]}
    assert on_estate == on_single


# --- subscription options, identifiers and aliases ---------------------------------------------------

def scenario_no_local(target: Target) -> dict:
    """A client that subscribes with no-local never gets its own messages back, not even round the star; the
    same message reaches a subscriber on another broker once."""
    name = topic("nolocal")
    own, other = target.client("b1", "nl-own"), target.client("b2", "nl-other")
    own.subscribe(name, 1, no_local=True)
    other.subscribe(name, 1)
    time.sleep(target.bridge_delay)
    for i in range(5):
        own.publish(name, f"m{i}".encode(), 1)
    wait_for(lambda: len(other.received) >= 5, 5)
    settle(target)
    own.stop(), other.stop()
    return {"own": own.payloads(), "other": other.payloads()}


def test_no_local_holds_across_brokers(single, estate):
    on_single, on_estate = both(single, estate, scenario_no_local)
    assert on_single == {"own": [], "other": [f"m{i}".encode() for i in range(5)]}
    assert on_estate == on_single


def scenario_retain_as_published(target: Target) -> dict:
    name = topic("rap")
    keeps, clears = target.client("b2", "rap-keep"), target.client("b0", "rap-clear")
    keeps.subscribe(name, 1, retain_as_published=True)
    clears.subscribe(name, 1)
    time.sleep(target.bridge_delay)
    pub = target.client("b1", "rap-pub")
    pub.publish(name, b"state", 1, retain=True)
    wait_for(lambda: keeps.received and clears.received, 5)
    settle(target)
    late = target.client("b2", "rap-late")
    late.subscribe(name, 1)
    wait_for(lambda: late.received, 5)
    pub.publish(name, b"", 1, retain=True)  # clear it again
    settle(target)
    for client in (keeps, clears, late, pub):
        client.stop()
    flags = lambda c: [(m["payload"], m["retain"]) for m in c.received if m["payload"]]  # noqa: E731
    return {"retain_as_published": flags(keeps), "live": flags(clears), "late": flags(late)}


def test_retain_flags_across_brokers(single, estate):
    """Retained messages, retain-as-published and the retain flag of live deliveries, as on one broker."""
    on_single, on_estate = both(single, estate, scenario_retain_as_published)
    assert on_single == {"retain_as_published": [(b"state", True)], "live": [(b"state", False)],
                         "late": [(b"state", True)]}
    assert on_estate == on_single


def scenario_subscription_identifiers(target: Target) -> dict:
    name = topic("subid")
    sub, pub = target.client("b2", "sid-sub"), target.client("b1", "sid-pub")
    sub.subscribe(name.rsplit("/", 1)[0] + "/+", 1, subscription_id=7)
    sub.subscribe("ha/mqtt5/#", 1, subscription_id=300)
    time.sleep(target.bridge_delay)
    pub.publish(name, b"x", 1)
    wait_for(lambda: sub.received, 5)
    settle(target)
    sub.stop(), pub.stop()
    return {"identifiers": sorted(tuple(sorted(m["properties"].get("SubscriptionIdentifier", [])))
                                  for m in sub.received)}


def test_subscription_identifiers_across_brokers(single, estate):
    on_single, on_estate = both(single, estate, scenario_subscription_identifiers)
    assert on_single["identifiers"] and all(ids for ids in on_single["identifiers"])
    assert on_estate == on_single


def scenario_topic_alias(target: Target) -> dict:
    """A publisher that names its topic once and then sends only the alias (client-to-server topic aliases)."""
    name = topic("alias")
    sub, pub = target.client("b2", "alias-sub"), target.client("b1", "alias-pub")
    sub.subscribe(name, 1)
    time.sleep(target.bridge_delay)
    pub.publish(name, b"first", 1, properties=publish_properties(TopicAlias=3))
    for i in range(3):
        pub.publish("", f"by-alias-{i}".encode(), 1, properties=publish_properties(TopicAlias=3))
    wait_for(lambda: len(sub.received) >= 4, 5)
    settle(target)
    sub.stop(), pub.stop()
    return {"delivered": [(m["topic"] == name, m["payload"]) for m in sub.received]}


def test_topic_aliases_from_publishers_across_brokers(single, estate):
    on_single, on_estate = both(single, estate, scenario_topic_alias)
    assert on_single == {"delivered": [(True, b"first")] + [(True, f"by-alias-{i}".encode()) for i in range(3)]}
    assert on_estate == on_single


# --- quality of service ------------------------------------------------------------------------------

def scenario_qos(target: Target, qos: int) -> dict:
    name = topic(f"qos{qos}")
    sub, pub = target.client("b2", "q-sub"), target.client("b1", "q-pub")
    sub.subscribe(name, qos)
    time.sleep(target.bridge_delay)
    for i in range(100):
        pub.publish(name, f"{i}".encode(), qos)
    wait_for(lambda: len(sub.received) >= 100, 10)
    settle(target)
    sub.stop(), pub.stop()
    return {"payloads": sub.payloads(), "qos": sorted({m["qos"] for m in sub.received})}


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_every_qos_once_and_in_order_between_mqtt5_clients(single, estate, qos):
    on_single, on_estate = both(single, estate, scenario_qos, qos)
    assert on_single == {"payloads": [f"{i}".encode() for i in range(100)], "qos": [qos]}
    assert on_estate == on_single


# --- shared subscriptions ----------------------------------------------------------------------------

def scenario_shared_subscriptions(target: Target) -> dict:
    """Two groups (three and two members, the estate's members through both HAProxy replicas' shared ports) and a
    plain subscriber; publishers on every broker. Each group must get each message once, spread over its members."""
    name = topic("shared")
    groups = {"historian": [target.shared_client("hist", replica=i % 2) for i in range(3)],
              "analytics": [target.shared_client("ana", replica=i % 2) for i in range(2)]}
    for group, members in groups.items():
        for member in members:
            assert member.subscribe(f"$share/{group}/{name}/#", 1) == [1]
    plain = target.client("b1", "shared-plain")
    plain.subscribe(f"{name}/#", 1)
    time.sleep(target.bridge_delay)
    publishers = [target.client(where, f"shared-pub-{where}") for where in ("b0", "b1", "b2")]
    sent = []
    for i in range(20):
        for publisher in publishers:
            payload = f"{publisher.client_id}:{i}".encode()
            publisher.publish(f"{name}/{i % 4}", payload, 1)
            sent.append(payload)
    everyone = [m for members in groups.values() for m in members] + [plain]
    wait_for(lambda: sum(len(m.received) for m in everyone) >= len(sent) * 3, 10)
    settle(target)
    result = {"sent": len(sent), "plain": sorted(plain.payloads()) == sorted(sent)}
    for group, members in groups.items():
        got = [p for member in members for p in member.payloads()]
        result[group] = {"once_each": sorted(got) == sorted(sent), "deliveries": len(got),
                         "members_used": sum(1 for member in members if member.received)}
    if isinstance(target, Estate):
        result["brokers"] = len({target.broker_of_connection(m) for members in groups.values() for m in members})
    for client in everyone + publishers:
        client.stop()
    return result


def test_shared_subscriptions_deliver_once_per_group(single, estate):
    """The rule: consumers of `$share/...` connect through a shared-subscription port. There, every member of
    every group is on one broker, whichever HAProxy replica it came through, and each message published on any
    broker is delivered once per group, as on one mosquitto."""
    on_single, on_estate = both(single, estate, scenario_shared_subscriptions)
    assert on_single == {"sent": 60, "plain": True,
                         "historian": {"once_each": True, "deliveries": 60, "members_used": 3},
                         "analytics": {"once_each": True, "deliveries": 60, "members_used": 2}}
    assert on_estate.pop("brokers") == 1
    assert on_estate == on_single


def test_shared_group_survives_the_loss_of_its_broker(fresh_estate):
    """Kill the broker that serves a shared group in the middle of a stream: the members move together to one
    other broker (all replicas agree), no message reaches the group twice, delivery resumes once per group, and
    the group stays together when the old broker returns (non-preemptive)."""
    estate = fresh_estate
    name = topic("shared-kill")
    members = [estate.shared_client("kill-member", replica=i % 2, reconnect=True) for i in range(3)]
    for member in members:
        member.subscribe(f"$share/historian/{name}", 1)
    home = estate.shared_broker()
    assert home is not None
    publisher = estate.client(next(b for b in ("b1", "b2") if b != home), "kill-pub", reconnect=True)
    time.sleep(estate.bridge_delay)
    sent = 0
    killed_at = None
    while sent < 400:
        publisher.publish(name, str(sent).encode(), 1)
        sent += 1
        if sent == 100:
            estate.local.kill(f"mosquitto-{home[1:]}")
            killed_at = sent
        time.sleep(0.01)
    got = [int(p) for member in members for p in member.payloads()]
    assert wait_for(lambda: len({int(p) for m in members for p in m.payloads()} & set(range(sent - 50, sent))) == 50, 10)
    settle(estate)
    got = [int(p) for member in members for p in member.payloads()]
    assert len(got) == len(set(got)), "a message reached the group twice"
    assert set(range(killed_at)) - set(got) <= set(range(killed_at - 20, killed_at)), "lost before the kill"
    assert set(range(sent - 100, sent)) <= set(got), "delivery did not resume once per group"
    new_home = estate.shared_broker()
    assert new_home != home and {estate.broker_of_connection(m) for m in members} == {new_home}
    estate.local.restart(f"mosquitto-{home[1:]}")
    time.sleep(3)  # the returned broker passes its health checks (rise 2)
    late = estate.shared_client("late-member", replica=1)
    assert estate.broker_of_connection(late) == new_home, "a returning broker split the group"
    lost = sorted(set(range(sent)) - set(got))
    print(f"shared group failover: {sent} sent, {len(lost)} lost around the kill ({lost[:3]}..{lost[-3:]}), 0 twice")
    for client in members + [publisher, late]:
        client.stop()


# --- scale-down --------------------------------------------------------------------------------------

def test_a_removed_broker_leaves_no_queue_on_the_hub(fresh_estate):
    """Scale-down: mosquitto-2 stops for good (SIGTERM, as the StatefulSet controller does). Its bridge's session
    on the hub ends with the connection (MQTT 5 bridge, session expiry 0: components/mosquitto_conf.py,
    render_bridge), so what is published afterwards is queued for nobody. Checked by taking the bridge's identity
    (its certificate and client id) on the hub's internal listener: no session, nothing delivered."""
    estate = fresh_estate
    time.sleep(1)  # every bridge is up
    gone = next(p for p in estate.local.brokers if p.pod == "mosquitto-2")
    gone.process.terminate()
    gone.process.wait(10)
    publisher = estate.client("b0", "after-scale-down")
    for i in range(200):
        publisher.publish(f"ha/scale-down/{i % 7}", f"{i}".encode(), 1)
    publisher.stop()
    hub = next(p for p in estate.local.brokers if p.pod == "mosquitto-0")
    bridge_files = tuple(hub.directory / "mosquitto" / "bridge" / name for name in ("ca.crt", "tls.crt", "tls.key"))
    internal_port = next(local for pod_port, local in hub.ports.items() if pod_port == 1884)
    probe = V5Client("127.0.0.1", internal_port, "mosquitto-2-bridge", clean_start=False, session_expiry=0,
                     tls=bridge_files).start()
    time.sleep(1)
    probe.stop()
    assert (probe.session_present, len(probe.received)) == (False, 0)


# --- retained state written from two places ----------------------------------------------------------

def _racing_retained(estate: Estate, writers: list) -> int:
    """Two writers set the same 20 retained topics at the same moment; late readers on every broker compare.
    Returns how many topics the brokers disagree on."""
    base = topic("race")
    for i in range(20):
        for n, writer in enumerate(writers):
            writer.c.publish(f"{base}/{i}", f"writer-{n}".encode(), qos=1, retain=True)
    time.sleep(1 + estate.bridge_delay)
    views = []
    for where in ("b0", "b1", "b2"):
        reader = estate.client(where, f"race-reader-{where}")
        reader.subscribe(f"{base}/#", 1)
        wait_for(lambda: len(reader.received) >= 20, 5)
        reader.stop()
        views.append({m["topic"]: m["payload"] for m in reader.received})
    for writer in writers:
        writer.stop()
    return sum(1 for i in range(20) if len({view.get(f"{base}/{i}") for view in views}) > 1)


def test_racing_retained_writers_agree_through_one_broker(estate):
    """Retained state written from two places at once (a redundant HMI pair, a PLC and its standby): writers on
    different brokers can leave the brokers holding different last values (each broker keeps the one that reached
    it last); through the shared ports both writers are on one broker, which orders their writes, and the star
    carries them to every broker in that order."""
    if estate.standby:
        pytest.skip("active-standby: every writer is on one broker already")
    spread = _racing_retained(estate, [estate.client("b1", "race-a"), estate.client("b2", "race-b")])
    together = _racing_retained(estate, [estate.shared_client("race-a", replica=0),
                                         estate.shared_client("race-b", replica=1)])
    print(f"retained race: {spread}/20 topics disagree with writers on two brokers, {together}/20 through one")
    assert together == 0
