"""A frontend in front of a single broker, and LoadBalancer waits that can be skipped, rendered and run for real.

Before, a lone broker never opened the internal listener the frontend health-checks, so HAProxy marked it down
and refused every client; now the internal listener opens whenever a frontend checks it.
"""

from __future__ import annotations

import json
import textwrap

from mqtt_estate.estate.local import LocalEstate
from mqtt_estate.estate.render import evaluate, render
from mqtt_estate.estate.smoke import run_smoke

SINGLE_WITH_FRONTEND = """
config:
  mqtt-estate:namespace: {name: mqtt-edge}
  mqtt-estate:broker:
    preset: edge-broker
    listeners:
      - {name: mqtts, port: 8883, tls: true}
  mqtt-estate:frontend:
    enabled: true
    service: {type: LoadBalancer, loadBalancerSourceRanges: [10.20.0.0/16], skipAwait: true}
  mqtt-estate:pki: {extraDnsNames: [mqtt.edge.example]}
  mqtt-estate:users:
    - {name: ops, role: admin}
"""


def _stack(tmp_path, text: str):
    path = tmp_path / "edge.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_frontend_in_front_of_one_broker_routes_clients(tmp_path, state_dir):
    rendered = render("edge", _stack(tmp_path, SINGLE_WITH_FRONTEND), out=tmp_path / "out", state_dir=state_dir)
    with LocalEstate(rendered, tmp_path / "local") as local:
        conn = json.loads(local.write_connection_file().read_text())
        assert conn["frontends"] and len(conn["brokers"]) == 1
        checks = run_smoke(conn)
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_skip_await_reaches_the_exposed_service(tmp_path, state_dir):
    _, registry = evaluate("edge", _stack(tmp_path, SINGLE_WITH_FRONTEND), state_dir)
    services = {r.inputs["metadata"]["name"]: r.inputs for r in registry.of_type("kubernetes:core/v1:Service")}
    exposed = services["mosquitto-frontend"]
    assert exposed["spec"]["type"] == "LoadBalancer"
    assert exposed["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert "annotations" not in services["mosquitto"]["metadata"]  # the broker Service stays inside
