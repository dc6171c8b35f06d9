"""The topology diagram `estate render` writes: the DOT drawn from the rendered objects (estate/topology.py) shows
exactly the pods, bridges, frontend routes, cloud endpoints, monitoring and storage those objects configure, the
same bytes every time, and without graphviz the render still succeeds with the .dot alone."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from mqtt_estate.estate.render import render, write_render
from mqtt_estate.estate.topology import topology_dot, write_topology
from tests.conftest import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _one(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def _conf_files(objects, statefulset):
    """The per-pod mosquitto.conf files of a clustered broker, from its ConfigMap."""
    volumes = statefulset["spec"]["template"]["spec"]["volumes"]
    config = _one(objects, "ConfigMap", next(v["configMap"]["name"] for v in volumes if v["name"] == "config"))
    name = statefulset["metadata"]["name"]
    return {k: v for k, v in config["data"].items() if re.fullmatch(re.escape(name) + r"-[0-9]+\.conf", k)}


def _edge_ids(dot: str, kind: str) -> list[str]:
    return re.findall(rf'id="{kind}:([^"]+)"', dot)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, state_dir):
    """tests/stacks/cloud.yaml: three brokers, the frontend and an AWS, an Azure and a generic MQTT bridge."""
    return render("cloud", ROOT / "tests" / "stacks" / "cloud.yaml", out=tmp_path_factory.mktemp("topo") / "cloud",
                  state_dir=state_dir)


def test_clustered_brokers_are_one_node_per_pod_with_the_bridges_their_conf_files_configure(rendered):
    result = rendered("ha")
    dot = (result.out / "topology.dot").read_text()
    sts = _one(result.objects, "StatefulSet", "mosquitto")
    ns, replicas = sts["metadata"]["namespace"], sts["spec"]["replicas"]
    confs = _conf_files(result.objects, sts)
    assert len(confs) == 4 and replicas == 3  # tests/stacks/ha.yaml: 3 brokers, autoscaling to 4

    pods = re.findall(rf'"pod/{ns}/(mosquitto-[0-9]+)" \[label="([^"]*)"', dot)
    assert [pod for pod, _ in pods] == [f"mosquitto-{i}" for i in range(len(confs))]
    assert [("when scaled up" in label) for _, label in pods] == [i >= replicas for i in range(len(confs))]

    primary, fallback = [], []
    for file_name, text in sorted(confs.items()):
        pod = file_name.removesuffix(".conf")
        addresses = [a for line in text.splitlines() if line.startswith("address ") for a in line.split()[1:]]
        targets = [a.split(".", 1)[0] for a in addresses]
        primary += [f"pod/{ns}/{pod}->pod/{ns}/{t}:estate-star" for t in targets[:1]]
        fallback += [f"pod/{ns}/{pod}->pod/{ns}/{t}:estate-star" for t in targets[1:]]
    assert len(primary) == 3 and len(fallback) == 3  # the star: every spoke joins mosquitto-0 first
    assert _edge_ids(dot, "bridge") == primary
    assert _edge_ids(dot, "failover") == fallback
    assert dot.count("estate-star :1884 mTLS") == len(primary)


def test_frontend_shows_its_exposed_ports_and_its_backends(rendered):
    result = rendered("ha")
    dot = (result.out / "topology.dot").read_text()
    service = _one(result.objects, "Service", "mosquitto-frontend")
    node = re.search(r'"svc/mqtt-ha/mosquitto-frontend" \[label="([^"]*)"', dot).group(1).split("\\n")
    assert node[:2] == ["Service mosquitto-frontend", service["spec"]["type"]]
    ports = service["spec"]["ports"]
    assert [line.split(" ")[:2] for line in node[2:]] == [[p["name"], f":{p['port']}"] for p in ports]
    assert "HAProxy frontend: StatefulSet mosquitto-frontend" in dot
    route = re.search(r'"pod/mqtt-ha/mosquitto-frontend-0" -> "pod/mqtt-ha/mosquitto-0" \[[^\]]*label="([^"]*)"',
                      dot).group(1).split("\\n")
    assert route == ["mqtt :1883 -> :1883 mqtt, roundrobin (4 servers)",
                     "mqtt-shared :1885 -> :1883 mqtt, first (4 servers)",
                     "mqtts :8883 -> :8883 mqtt+TLS, source (4 servers)",
                     "mqtts-shared :8885 -> :8883 mqtt+TLS, first (4 servers)",
                     "health checks -> :1884 MQTT CONNECT over mTLS"]
    assert '"clients" -> "svc/mqtt-ha/mosquitto-frontend"' in dot


def test_cloud_bridges_reach_their_remote_endpoints_without_any_secret(cloud):
    dot = (cloud.out / "topology.dot").read_text()
    endpoints = {name: b["endpoint"] for name, b in cloud.registry.public_outputs()["bridges"].items()}
    expected = {"aws": ("AWS IoT Core", "mTLS"), "azure": ("Azure IoT Hub", "TLS"), "hq": ("MQTT broker", "TLS")}
    for name, (provider, security) in expected.items():
        remote = f"remote/{endpoints[name]}:8883"
        assert f'"{remote}" [label="{provider}\\n{endpoints[name]}"' in dot
        pod = f"pod/mqtt-cloud/mosquitto-cloud-{name}-0"
        assert _edge_ids(dot, "bridge").count(f"{pod}->{remote}:cloud") == 1
        assert _edge_ids(dot, "bridge").count(f"{pod}->pod/mqtt-cloud/mosquitto-0:estate") == 1
        assert re.search(rf'id="bridge:{pod}->{remote}:cloud", label="cloud :8883 {security}"', dot)
    secrets = ["quartz-harbour-violet-meadow-42", "SharedAccessSignature", "PRIVATE KEY", "password"]
    for path in (cloud.out / "topology.dot", cloud.out / "topology.svg"):
        text = path.read_text()
        assert not [s for s in secrets if s in text], path


def test_monitoring_is_a_prometheus_scraping_the_pods_when_it_is_on(rendered):
    dot = (rendered("monitoring").out / "topology.dot").read_text()
    assert '"prometheus" [label="Prometheus\\nselects release=kube-prometheus-stack"' in dot
    assert 'label="namespace monitoring (Prometheus Operator)"' in dot
    scrapes = re.findall(r'"prometheus" -> "pod/mqtt-mon/([a-z0-9-]+)" \[[^\]]*label="([^"]*)"', dot)
    assert scrapes == [("mosquitto-0", "PodMonitor mosquitto\\nscrape metrics :9234/metrics every 1s"),
                       ("mosquitto-frontend-0", "PodMonitor mosquitto-frontend\\nscrape stats :8404/metrics every 1s "
                                                "(basic auth)")]
    assert re.search(r'"rule/mqtt-mon/mosquitto-monitoring" \[label="PrometheusRule mosquitto-monitoring\\n[0-9]+ '
                     r'alerts', dot)
    assert "prometheus" not in (rendered("dev").out / "topology.dot").read_text()


def test_storage_shows_claim_sizes_and_the_nfs_volumes_they_bind(rendered):
    ha = rendered("ha")
    dot = (ha.out / "topology.dot").read_text()
    claim = _one(ha.objects, "StatefulSet", "mosquitto")["spec"]["volumeClaimTemplates"][0]
    size = claim["spec"]["resources"]["requests"]["storage"]
    assert f'"pvc/mqtt-ha/mosquitto/data" [label="PVC template data\\n{size} ReadWriteOnce per pod' in dot
    volumes = sorted(o["metadata"]["name"] for o in ha.objects if o["kind"] == "PersistentVolume")
    assert len(volumes) == 4
    for i, volume in enumerate(volumes):
        assert f'"pvc/mqtt-ha/mosquitto/data" -> "pv/{volume}" [label="binds data-mosquitto-{i}"' in dot
        assert f"NFS nfs.plant.example:/exports/mqtt/mosquitto-{i}" in dot
    assert "PVC template data\\n20Gi ReadWriteOnce per pod" in (rendered("dev").out / "topology.dot").read_text()


def test_svg_names_every_broker_pod_and_png_is_a_png(rendered):
    result = rendered("prod")
    texts = {t.text for t in ET.parse(result.out / "topology.svg").iter("{http://www.w3.org/2000/svg}text")}
    pods = [f"mosquitto-{i}" for i in range(5)]  # 3 replicas, autoscaling to 5
    assert set(pods) <= texts and {"mosquitto-frontend-0", "mosquitto-frontend-1"} <= texts
    assert (result.out / "topology.png").read_bytes().startswith(PNG_SIGNATURE)


def test_same_objects_same_bytes(rendered, tmp_path):
    result = rendered("ha")
    dot = topology_dot(result.objects)
    assert dot == topology_dot(list(reversed(result.objects))) == (result.out / "topology.dot").read_text()
    first = write_topology(result.objects, tmp_path / "a")
    second = write_topology(result.objects, tmp_path / "b")
    assert [p.name for p in first] == ["topology.dot", "topology.svg", "topology.png"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert [p.read_bytes() for p in first] == [(result.out / p.name).read_bytes() for p in first]


def test_without_dot_the_render_writes_the_dot_file_and_one_warning(rendered, tmp_path, monkeypatch, capsys):
    dev = rendered("dev")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = write_render("dev", dev.stack_file, dev.registry, tmp_path / "out")
    assert sorted(p.name for p in result.out.glob("topology.*")) == ["topology.dot"]
    warning = capsys.readouterr().err.splitlines()
    assert len(warning) == 1 and "`dot`" in warning[0] and "apt-get install graphviz" in warning[0]


def test_a_failing_dot_leaves_the_dot_file_and_warns(rendered, tmp_path, monkeypatch, capsys):
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Error: boom' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    written = write_topology(rendered("dev").objects, tmp_path / "out")
    assert [p.name for p in written] == ["topology.dot"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["topology.dot"]
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == ["warning: `dot -Tsvg` failed (exit 3: Error: boom): no topology.svg",
                        "warning: `dot -Tpng` failed (exit 3: Error: boom): no topology.png"]
