"""The credential model (components/credentials.py): how a password was made decides its hash, judged at config
time, by the component, by the policy pack, and on a real mosquitto."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

from mqtt_estate.components import credentials as model
from mqtt_estate.components.broker import MosquittoBroker
from mqtt_estate.components.credentials import supplied_password_problem
from mqtt_estate.components.passwords import password_file
from mqtt_estate.components.pki import Pki
from mqtt_estate.estate.local import LocalEstate
from mqtt_estate.estate.mqtt_client import connect
from mqtt_estate.estate.render import render
from tests.conftest import ROOT
from tests.harness import by_name, run_components
from tests.test_components import SETTINGS

from mqtt_estate.policy.rules_credentials import hash_cost, password_bits, password_hashes  # noqa: E402

STRONG = "orchid-lantern-gravel-mosaic-ferry"
POLICY_DEFAULTS = {"minimumIterations": model.SUPPLIED_ITERATIONS, "minimumGeneratedBits": 128,
                   "maximumIterations": model.MAXIMUM_ITERATIONS}


# --- the model ------------------------------------------------------------------------------------------------

def test_generated_passwords_carry_128_bits_or_more():
    assert model.GENERATED_BITS == 190
    assert password_bits({"length": model.GENERATED_LENGTH, "special": False}) >= 190


@pytest.mark.parametrize("password", [
    "Summer2024!Factory",      # 18 characters and four classes: the old length rule let it through
    "Tr0ub4dor&3",
    "mqtt-prod-mosquitto-2024",  # built from the estate's own words
    "sensor-01-password",
])
def test_guessable_passwords_are_refused_with_the_reason(password):
    problem = supplied_password_problem("sensor-01", password, model.SUPPLIED_ITERATIONS, ["mqtt-prod"])
    assert problem and problem.startswith("is too easy to guess: about 10^")
    assert "at least 10^15" in problem
    assert password not in problem  # never shown


def test_strong_passphrases_and_random_strings_pass():
    for password in (STRONG, "qK8vN2xR7mP4tW9zL3cB"):
        assert supplied_password_problem("ops-admin", password, model.SUPPLIED_ITERATIONS) is None


def test_more_iterations_lower_the_floor_but_stop_at_the_maximum():
    """guesses x iterations >= 10^19: a 16-random-character string (zxcvbn: 10^16) passes at 10000, a
    12-character one (10^12) only ever would at 10^7 iterations, which the model refuses."""
    assert model.minimum_guesses(100_000) == 10 ** 14
    assert supplied_password_problem("u", "qK8vN2xR7mP4", model.MAXIMUM_ITERATIONS) is not None
    assert supplied_password_problem("u", "qK8vN2xR7mP4tW9z", model.SUPPLIED_ITERATIONS) is None


def test_empty_name_and_oversized_passwords():
    assert "empty" in supplied_password_problem("u", "", 10_000)
    assert "user name" in supplied_password_problem("Scada-Host", "scada-host", 10_000)
    assert "65535 bytes" in supplied_password_problem("u", "x" * 70_000, 10_000)
    # zxcvbn judges the first 72 characters only: a long passphrase is judged by its prefix, never refused for it
    assert supplied_password_problem("u", STRONG * 3, 10_000) is None


def test_crack_time_matches_the_reference_gpu():
    """10^15 guesses at 10000 iterations on 3.15e9 iterations/s: about 100 years for the whole space."""
    assert math.isclose(model.gpu_years(1e15, 10_000), 1e19 / 3.15e9 / (365.25 * 86400))
    assert 95 < model.gpu_years(1e15, 10_000) < 105


# --- the password file ----------------------------------------------------------------------------------------

def test_each_line_carries_its_own_iteration_count():
    text = password_file({"dev": ("g" * 32, 101), "ops": (STRONG, 10_000)}, "ns/b")
    assert [line.split("$")[2] for line in text.splitlines()] == ["101", "10000"]


def _broker(users, iterations=10_000):
    settings = {**SETTINGS, "listeners": [{"name": "mqtt", "port": 1883}]}

    def body():
        pki = Pki("b-pki", {"client_names": []})
        MosquittoBroker("b", {"namespace": "ns", "settings": settings, "users": users,
                              "password_iterations": iterations, "ca_cert_pem": pki.ca_cert_pem,
                              "server_cert_pem": pki.server_cert_pem, "server_key_pem": pki.server_key_pem})
    return run_components(body)


def test_component_hashes_by_origin_and_says_which_were_supplied():
    registry = _broker([{"name": "dev1"}, {"name": "ops", "role": "admin", "password": STRONG}])
    auth = by_name(registry, "b-auth").inputs
    lines = dict(line.split(":", 1) for line in auth["stringData"]["passwd"].splitlines())
    assert lines["dev1"].startswith("$7$101$") and lines["ops"].startswith("$7$10000$")
    assert auth["metadata"]["annotations"] == {model.SUPPLIED_ANNOTATION: "ops",
                                               model.GENERATED_BITS_ANNOTATION: "190"}
    generator = by_name(registry, "b-password-dev1").inputs
    assert (generator["length"], generator["special"]) == (32, False)
    assert "b-password-ops" not in {r.name for r in registry.resources}
    assert list(password_hashes({"stringData": auth["stringData"], "metadata": auth["metadata"]},
                                POLICY_DEFAULTS)) == []


def test_component_refuses_a_weak_supplied_password():
    """A program of one's own (not the stack config) gets the same floor, from the component."""
    with pytest.raises(ValueError, match=r"MosquittoBroker b: args.users\[0\].password: is too easy to guess"):
        _broker([{"name": "ops", "password": "Summer2024!Factory"}])


def test_component_refuses_iterations_that_stall_the_broker():
    with pytest.raises(ValueError, match="args.password_iterations: 210000 is out of range"):
        _broker([{"name": "dev1"}], iterations=210_000)


# --- the policy pack, line by line ----------------------------------------------------------------------------

def _secret(passwd: str, annotations=None) -> dict:
    return {"stringData": {"passwd": passwd}, "metadata": {"annotations": annotations or {}}}


def test_policy_judges_each_line_by_how_its_password_was_made():
    passwd = "dev1:$7$101$c2FsdA==$aGFzaA==\nops:$7$1000$c2FsdA==$aGFzaA==\n"
    marked = {model.SUPPLIED_ANNOTATION: "ops", model.GENERATED_BITS_ANNOTATION: "190"}
    assert list(password_hashes(_secret(passwd, marked), POLICY_DEFAULTS)) == [
        "passwd line 2 (ops): 1000 PBKDF2 iterations for a supplied password (minimum 10000)"]
    # a hand-written Secret that does not say how its passwords were made is judged as supplied, line by line
    unmarked = list(password_hashes(_secret(passwd), POLICY_DEFAULTS))
    assert len(unmarked) == 2 and "judged as supplied" in unmarked[0]
    # a generator that is too weak makes its low-iteration lines fail
    weak = {model.SUPPLIED_ANNOTATION: "ops", model.GENERATED_BITS_ANNOTATION: "64"}
    assert any("64 bits" in v for v in password_hashes(_secret(passwd, weak), POLICY_DEFAULTS))


def test_policy_caps_what_a_line_costs_the_broker():
    found = list(hash_cost(_secret("ops:$7$210000$c2FsdA==$aGFzaA==\n"), POLICY_DEFAULTS))
    assert found == ["passwd line 1 (ops): 210000 PBKDF2 iterations cost the broker's one thread about 111 ms "
                     "per CONNECT, right or wrong (maximum 100000)"]


@pytest.mark.parametrize("inputs,bits", [
    ({"length": 32, "special": False}, 190),
    ({"length": 16, "special": False}, 95),
    ({"length": 32}, 204),                                           # special on by default: 83 characters
    ({"length": 20, "upper": False, "lower": False, "special": False}, 66),   # digits only
    ({"length": 24, "overrideSpecial": "!!!", "numeric": False, "upper": False, "lower": False}, 0),
])
def test_random_password_entropy_from_its_inputs(inputs, bits):
    assert int(password_bits(inputs)) == bits


# --- on a real mosquitto: generated and supplied users log in; a weak one never gets that far -------------------

STACK = textwrap.dedent("""\
    config:
      mqtt-estate:namespace: {name: creds}
      mqtt-estate:broker:
        preset: edge-broker
        listeners: [{name: mqtt, port: 1883}]
      mqtt-estate:users:
        - {name: sensor-01, role: device, topics: [{access: readwrite, topic: "plant/sensor-01/#"}]}
        - {name: ops-admin, role: admin}
      mqtt-estate:password-ops-admin: %s
    """)


def test_generated_and_supplied_users_log_in_on_mosquitto(tmp_path, state_dir):
    stack = tmp_path / "creds.yaml"
    stack.write_text(STACK % STRONG)
    rendered = render("creds", stack, out=tmp_path / "out", state_dir=state_dir)
    passwd = next(o for o in rendered.objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-auth"))
    lines = dict(line.split(":", 1) for line in passwd["stringData"]["passwd"].splitlines())
    assert lines["sensor-01"].startswith("$7$101$") and lines["ops-admin"].startswith("$7$10000$")
    credentials = rendered.registry.stack_outputs["credentials"]
    with LocalEstate(rendered, tmp_path / "run") as estate:
        listener = next(lst for lst in estate.brokers[0].listeners if lst["name"] == "mqtt")
        for user, password in (("sensor-01", credentials["sensor-01"]), ("ops-admin", STRONG)):
            result = connect(listener, username=user, password=password)
            assert result.accepted, (user, result)
            result.close()
        wrong = connect(listener, username="sensor-01", password=credentials["sensor-01"][:-1] + "!")
        assert not wrong.accepted and wrong.v3_return_code in (4, 5)


def test_a_weak_supplied_password_is_refused_at_config_time(tmp_path):
    stack = tmp_path / "creds.yaml"
    stack.write_text(STACK % "Summer2024!Factory")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "estate", "render", "--stack", "creds", "--config", str(stack),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("creds.yaml: mqtt-estate:password-ops-admin: is too easy to guess"), \
        proc.stderr
    assert "Summer2024" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert not out.exists()
