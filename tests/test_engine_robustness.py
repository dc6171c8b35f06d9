"""The offline engine on hostile or broken input: each is refused with one clear line (or computed, where the
real provider computes it), never a crash, a traceback or an endless run.

- YAML aliases that expand without bound (billion laughs) are refused while the file is composed;
- two resources with one URN are refused the way `pulumi up` refuses them;
- a resource the engine cannot compute names itself (type and name) and says what is wrong;
- a policy that raises is reported at its enforcement level, the run goes on;
- `up --local` stops on SIGINT and SIGTERM even when started with SIGINT ignored.

No assertion here is about time (project rule): bounds are asserted on the work done instead.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pulumi
import pulumi_random as random
import pulumi_tls as tls
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from mqtt_estate.estate import stackfile
from mqtt_estate.estate.engine import EngineError
from mqtt_estate.estate.policy_run import mandatory, read_overrides, report_text, run_policies
from mqtt_estate.estate.stackfile import MAX_FILE_BYTES, MAX_VALUES, read_stack_file
from mqtt_estate.stacks.errors import StackConfigError
from tests.conftest import ROOT
from tests.harness import alive, run_components, running_up

TRACEBACK = "Traceback"
BOMB_REFUSAL = "refused (aliases expand to more than 100000 values; stack files need no such structure)"


def billion_laughs(levels: int = 9) -> str:
    """Under 1 KB that expands to 10**levels values (10**9 at 9 levels)."""
    text = "config:\n  mqtt-estate:broker:\n    name: mosquitto\n  kubernetes:x-anchors:\n"
    text += "    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels + 1):
        text += f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    return text + f"  mqtt-estate:users: *a{levels}\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# ------------------------------------------------------------------------------------------------ YAML aliases

# Measured on the shared 2-core machine (`/usr/bin/time -v python3 -m estate render --stack bad --config
# laughs.yaml --out /tmp/out`, the bomb under mqtt-estate:users):
#   before: 487 bytes (6 levels) 4.7 s / 208 MB; 550 bytes (7 levels) 46 s / 1.48 GB; 8 levels never finished
#   after:  any level (9 here: 10**9 values) refused in 0.42 s / 64 MB, i.e. the interpreter's start-up;
#           the loader stops counting after ~10**5 values.

def test_billion_laughs_is_refused_while_composing(tmp_path):
    path = write(tmp_path, "Pulumi.bomb.yaml", billion_laughs(9))
    assert path.stat().st_size < 1000
    with pytest.raises(StackConfigError) as raised:
        read_stack_file(path)
    # line 9 holds `a4: &a4 [*a3, ...]`: the first alias whose expansion passes the bound
    assert raised.value.lines == [f"Pulumi.bomb.yaml: line 9: alias *a3 {BOMB_REFUSAL}"]


def test_billion_laughs_counting_stays_bounded(tmp_path):
    """The refusal costs ~MAX_VALUES counted values and a little memory, not 10**9 values."""
    loader = stackfile._UniqueKeyLoader(billion_laughs(9))
    tracemalloc.start()
    try:
        with pytest.raises(yaml.YAMLError, match="aliases expand to more than"):
            loader.get_single_data()
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        loader.dispose()
    assert loader.written < 200
    assert loader.peak_expanded <= 2 * MAX_VALUES + loader.written
    assert peak_bytes < 5 * 2 ** 20  # the graph of ~100 nodes and the memo, nothing expanded


def test_billion_laughs_cli_exit_2_one_line(tmp_path):
    path = write(tmp_path, "Pulumi.bomb.yaml", billion_laughs(9))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "estate", "render", "--stack", "bomb", "--config", str(path),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"Pulumi.bomb.yaml: line 9: alias *a3 {BOMB_REFUSAL}"]
    assert proc.stdout == ""
    assert not out.exists()


def test_a_couple_of_aliases_still_work(tmp_path):
    path = write(tmp_path, "Pulumi.shared.yaml", """
        config:
          mqtt-estate:broker:
            name: mosquitto
            listeners: &listeners
              - {name: mqtt, port: 1883}
              - {name: mqtts, port: 8883, tls: true}
          kubernetes:shared-listeners: *listeners
          mqtt-estate:users:
            - &device {name: sensor-01, role: device, zone: production}
            - {<<: *device, name: sensor-02}
    """)
    document = stackfile._parse(path)
    listeners = [{"name": "mqtt", "port": 1883}, {"name": "mqtts", "port": 8883, "tls": True}]
    assert document["config"]["mqtt-estate:broker"]["listeners"] == listeners
    assert document["config"]["kubernetes:shared-listeners"] == listeners
    assert document["config"]["mqtt-estate:users"][1] == {"name": "sensor-02", "role": "device",
                                                          "zone": "production"}


def test_aliases_may_add_up_to_the_bound():
    """Expansion up to MAX_VALUES is fine (a big shared block reused a few times); one step more is not."""
    block = "[" + ", ".join(["x"] * 999) + "]"  # 1000 values with the list itself
    reuse = MAX_VALUES // 1000
    aliases = ", ".join(["*a"] * reuse)
    loaded = yaml.load(f"a: &a {block}\nb: [{aliases}]\n", Loader=stackfile._UniqueKeyLoader)
    assert len(loaded["b"]) == reuse
    with pytest.raises(yaml.YAMLError, match="aliases expand to more than"):
        yaml.load(f"a: &a {block}\nb: [{aliases}, *a]\n", Loader=stackfile._UniqueKeyLoader)


def test_recursive_alias_is_refused(tmp_path):
    path = write(tmp_path, "Pulumi.loop.yaml", """
        config:
          mqtt-estate:broker: &b
            name: [*b]
    """)
    with pytest.raises(StackConfigError) as raised:
        read_stack_file(path)
    assert raised.value.lines == ["Pulumi.loop.yaml: line 3: alias *b refers to a value that contains it "
                                  "(recursive structures are not allowed; stack files need no such structure)"]


def test_absurd_nesting_is_refused(tmp_path):
    path = tmp_path / "Pulumi.deep.yaml"
    path.write_text("config:\n  kubernetes:x: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(StackConfigError) as raised:
        read_stack_file(path)
    assert raised.value.lines == ["Pulumi.deep.yaml: line 2: nested more than 100 levels deep "
                                  "(stack files need no such structure)"]


def test_oversized_file_is_refused_unparsed(tmp_path):
    path = tmp_path / "Pulumi.big.yaml"
    path.write_text("config:\n  kubernetes:x:\n" + "    - 1\n" * (MAX_FILE_BYTES // 8 + 1))
    with pytest.raises(StackConfigError) as raised:
        read_stack_file(path)
    size = path.stat().st_size
    assert raised.value.lines == [f"Pulumi.big.yaml: {size} bytes is too large for a stack file "
                                  f"(at most {MAX_FILE_BYTES} bytes; stack files need no such structure)"]


# ------------------------------------------------------------------------------------------------ duplicate URNs

def test_duplicate_urn_is_refused_with_pulumis_message():
    def body():
        random.RandomPassword("dup", length=16)
        random.RandomPassword("dup", length=24)

    with pytest.raises(EngineError) as raised:
        run_components(body)
    # pulumi/pulumi sdk/go/common/diag/errors.go GetDuplicateResourceURNError, as `pulumi up` prints it
    assert raised.value.problems == [
        "Duplicate resource URN 'urn:pulumi:test::mqtt-estate::random:index/randomPassword:RandomPassword::dup'; "
        "try giving it a unique name"]


class _Box(pulumi.ComponentResource):
    def __init__(self, typ: str, name: str, opts=None):
        super().__init__(typ, name, None, opts)
        random.RandomPassword("inner", length=16, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


def test_urns_follow_pulumis_parent_chain():
    """Same type and name under parents whose qualified types differ are two URNs (A$Box$... vs B$Box$...), as
    in Pulumi; the same parent type twice is one URN, also as in Pulumi (the parent's name is not in a URN)."""
    def distinct():
        a = _Box("test:index:A", "a")
        b = _Box("test:index:B", "b")
        _Box("test:index:Box", "box", pulumi.ResourceOptions(parent=a))
        _Box("test:index:Box", "box", pulumi.ResourceOptions(parent=b))

    registry = run_components(distinct)
    assert len([r for r in registry.resources if r.name == "inner"]) == 4

    def same_parent_type():
        _Box("test:index:Box", "one")
        _Box("test:index:Box", "two")

    with pytest.raises(EngineError) as raised:
        run_components(same_parent_type)
    assert raised.value.problems == [
        "Duplicate resource URN 'urn:pulumi:test::mqtt-estate::test:index:Box$random:index/randomPassword:"
        "RandomPassword::inner'; try giving it a unique name"]


# ------------------------------------------------------------------------------------------------ resources

def test_p224_key_is_computed_like_the_provider():
    """pulumi-tls supports P224; x/crypto/ssh does not, so the provider leaves the OpenSSH fields empty
    (the engine crashed on them before)."""
    def body():
        key = tls.PrivateKey("k224", algorithm="ECDSA", ecdsa_curve="P224")
        tls.SelfSignedCert("c224", private_key_pem=key.private_key_pem, validity_period_hours=24,
                           subject=tls.SelfSignedCertSubjectArgs(common_name="p224"), allowed_uses=["cert_signing"])

    registry = run_components(body)
    key = next(r for r in registry.resources if r.name == "k224").outputs
    loaded = serialization.load_pem_private_key(key["privateKeyPem"].encode(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey) and loaded.curve.name == "secp224r1"
    assert key["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert (key["publicKeyOpenssh"], key["publicKeyFingerprintSha256"], key["publicKeyFingerprintMd5"]) == ("", "", "")
    cert = next(r for r in registry.resources if r.name == "c224").outputs
    assert cert["certPem"].startswith("-----BEGIN CERTIFICATE-----")


def _refusal(body) -> list[str]:
    with pytest.raises(EngineError) as raised:
        run_components(body)
    return raised.value.problems


@pytest.mark.parametrize("kwargs, problem", [
    ({"algorithm": "DSA"}, "algorithm 'DSA' is not supported (use RSA, ECDSA or ED25519)"),
    ({"algorithm": "ECDSA", "ecdsa_curve": "P999"}, "ecdsaCurve 'P999' is not supported (use P224, P256, P384 or P521)"),
    ({"algorithm": "RSA", "rsa_bits": 0}, "rsaBits: 0 is out of range (must be >= 1024)"),
], ids=["algorithm", "curve", "rsa-bits"])
def test_private_key_inputs_the_engine_cannot_compute(kwargs, problem):
    assert _refusal(lambda: tls.PrivateKey("bad-key", **kwargs)) == [
        f"tls:index/privateKey:PrivateKey resource 'bad-key' has a problem: {problem}"]


GARBAGE_CERT = "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"


def _leaf(ca_cert_pem, ca_key_pem):
    key = tls.PrivateKey("leaf-key", algorithm="ECDSA", ecdsa_curve="P256")
    csr = tls.CertRequest("leaf-csr", private_key_pem=key.private_key_pem,
                          subject=tls.CertRequestSubjectArgs(common_name="leaf"))
    tls.LocallySignedCert("leaf-cert", cert_request_pem=csr.cert_request_pem, ca_cert_pem=ca_cert_pem,
                          ca_private_key_pem=ca_key_pem, validity_period_hours=24, allowed_uses=["server_auth"])
    return key


def _ca(name: str):
    key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256")
    cert = tls.SelfSignedCert(f"{name}-cert", private_key_pem=key.private_key_pem, validity_period_hours=48,
                              is_ca_certificate=True, allowed_uses=["cert_signing"],
                              subject=tls.SelfSignedCertSubjectArgs(common_name=name))
    return key, cert


def test_garbage_ca_certificate_names_the_resource():
    def body():
        ca_key, _ = _ca("ca")
        _leaf(GARBAGE_CERT, ca_key.private_key_pem)

    problems = _refusal(body)
    assert len(problems) == 1
    assert problems[0].startswith("tls:index/locallySignedCert:LocallySignedCert resource 'leaf-cert' has a problem: "
                                  "caCertPem is not a usable PEM certificate (")
    assert "https://" not in problems[0]


def test_garbage_ca_key_names_the_resource():
    def body():
        _, ca_cert = _ca("ca")
        _leaf(ca_cert.cert_pem, "not a key")

    problems = _refusal(body)
    assert len(problems) == 1
    assert problems[0].startswith("tls:index/locallySignedCert:LocallySignedCert resource 'leaf-cert' has a problem: "
                                  "caPrivateKeyPem is not a usable PEM private key (")


def test_ca_key_that_does_not_match_the_ca_certificate():
    def body():
        _, ca_cert = _ca("ca")
        other_key, _ = _ca("other")
        _leaf(ca_cert.cert_pem, other_key.private_key_pem)

    assert _refusal(body) == ["tls:index/locallySignedCert:LocallySignedCert resource 'leaf-cert' has a problem: "
                              "caPrivateKeyPem does not match caCertPem (the key is not the certificate's key)"]


@pytest.mark.parametrize("kwargs, problem", [
    ({"length": 0}, "length: 0 is out of range (must be >= 1 and <= 65536)"),
    ({"length": 4, "min_upper": 3, "min_numeric": 3},
     "length 4 is less than minUpper + minLower + minNumeric + minSpecial (6)"),
    ({"length": 8, "upper": False, "lower": False, "numeric": False, "special": False},
     "upper, lower, numeric and special are all false (at least one must be true)"),
], ids=["length-0", "impossible-minimums", "no-characters"])
def test_random_password_the_engine_cannot_compute(kwargs, problem):
    assert _refusal(lambda: random.RandomPassword("pw", **kwargs)) == [
        f"random:index/randomPassword:RandomPassword resource 'pw' has a problem: {problem}"]


def test_refusal_leaves_no_asyncio_noise(caplog):
    """Every output of a refused resource holds the error; none may be logged as 'never retrieved'."""
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _refusal(lambda: random.RandomPassword("pw", length=0))
        gc.collect()
    assert [r for r in caplog.records if "never retrieved" in r.getMessage()] == []


def test_every_refused_resource_is_listed_once():
    def body():
        random.RandomPassword("pw-a", length=0)
        random.RandomPassword("pw-b", length=0)

    assert sorted(_refusal(body)) == [
        f"random:index/randomPassword:RandomPassword resource '{name}' has a problem: "
        "length: 0 is out of range (must be >= 1 and <= 65536)" for name in ("pw-a", "pw-b")]


# ------------------------------------------------------------------------------------------------ CLI

def _run_program_via_cli(tmp_path: Path, program: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Render a test program of its own (`--program`: its seed stays in its directory, not in the repository)."""
    directory = tmp_path / "program"
    directory.mkdir()
    (directory / "__main__.py").write_text(textwrap.dedent(program))
    write(directory, "Pulumi.yaml", "name: robustness\nruntime: python\n")
    write(directory, "Pulumi.t.yaml", "config: {}\n")
    return subprocess.run([sys.executable, "-m", "estate", "render", "--program", str(directory), "--stack", "t",
                           "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


DUPLICATES = """
    import pulumi_random as random
    random.RandomPassword("dup", length=16)
    random.RandomPassword("dup", length=16)
"""


def test_cli_engine_error_is_one_line_exit_1(tmp_path):
    proc = _run_program_via_cli(tmp_path, DUPLICATES)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: Duplicate resource URN 'urn:pulumi:t::robustness::random:index/randomPassword:RandomPassword::dup'; "
        "try giving it a unique name"]
    assert TRACEBACK not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_unknown_curve_is_one_line_exit_1(tmp_path):
    proc = _run_program_via_cli(tmp_path, """
        import pulumi_tls as tls
        tls.PrivateKey("odd-key", algorithm="ECDSA", ecdsa_curve="P192")
    """)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: tls:index/privateKey:PrivateKey resource 'odd-key' has a problem: ecdsaCurve 'P192' is not supported "
        "(use P224, P256, P384 or P521)"]
    assert TRACEBACK not in proc.stdout + proc.stderr


def test_cli_debug_shows_the_traceback(tmp_path):
    proc = _run_program_via_cli(tmp_path, DUPLICATES, env={"ESTATE_DEBUG": "1"})
    assert proc.returncode == 1
    assert TRACEBACK in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("mqtt_estate.estate.engine.EngineError: Duplicate resource URN")


# ------------------------------------------------------------------------------------------------ policies

def _small_registry():
    return run_components(lambda: random.RandomPassword("pw", length=16))


def _raising_policy(level: EnforcementLevel) -> ResourceValidationPolicy:
    def validate(args, report):
        if args.resource_type.startswith("random:"):
            return args.props["spec"]["containers"]  # odd props for this policy: KeyError
        report("looked at it")

    return ResourceValidationPolicy(name=f"fragile-{level.value}", description="raises on props it did not expect",
                                    validate=validate, enforcement_level=level)


def test_policy_that_raises_is_reported_at_its_level_and_the_run_goes_on():
    registry = _small_registry()
    mandatory_policy = _raising_policy(EnforcementLevel.MANDATORY)
    advisory_policy = _raising_policy(EnforcementLevel.ADVISORY)
    violations = run_policies(registry, "test", policies=[mandatory_policy, advisory_policy])
    could_not = [v for v in violations if not v.judged]
    assert [(v.policy, v.level, v.line()) for v in could_not] == [
        ("fragile-mandatory", EnforcementLevel.MANDATORY,
         "policy fragile-mandatory could not judge random:index/randomPassword:RandomPassword pw: KeyError: 'spec'"),
        ("fragile-advisory", EnforcementLevel.ADVISORY,
         "policy fragile-advisory could not judge random:index/randomPassword:RandomPassword pw: KeyError: 'spec'"),
    ]
    # the same policies still judged the other resource (the stack)
    assert [v.resource_type for v in violations if v.judged] == ["pulumi:pulumi:Stack"] * 2
    # a mandatory policy that cannot judge blocks, like a violation; an advisory one does not
    assert [v.policy for v in mandatory(violations) if not v.judged] == ["fragile-mandatory"]
    text = report_text(violations, 2, 2)
    assert ("  policy fragile-mandatory could not judge random:index/randomPassword:RandomPassword pw: "
            "KeyError: 'spec'") in text.splitlines()


def test_policy_overrides_apply_to_could_not_judge():
    registry = _small_registry()
    policy = _raising_policy(EnforcementLevel.MANDATORY)
    violations = run_policies(registry, "test", {policy.name: "advisory"}, policies=[policy])
    assert [v.level for v in violations if not v.judged] == [EnforcementLevel.ADVISORY]
    assert run_policies(registry, "test", {policy.name: "disabled"}, policies=[policy]) == []


def test_stack_policy_that_raises_is_reported():
    def validate(args, report):
        raise RuntimeError("boom")

    policy = StackValidationPolicy(name="fragile-stack", description="raises", validate=validate,
                                   enforcement_level=EnforcementLevel.MANDATORY)
    violations = run_policies(_small_registry(), "test", policies=[policy])
    assert [v.line() for v in violations] == [
        "policy fragile-stack could not judge pulumi:pulumi:Stack mqtt-estate-test: RuntimeError: boom"]
    assert mandatory(violations) == violations


def test_the_pack_survives_odd_resources():
    """The shipped pack on resources with props it never sees from the components: no crash."""
    def body():
        pulumi.CustomResource("kubernetes:core/v1:ConfigMap", "odd-config", {"data": None, "metadata": "x"})
        pulumi.CustomResource("kubernetes:apps/v1:StatefulSet", "odd-sts", {"spec": {"template": None}})
        pulumi.CustomResource("tls:index/privateKey:PrivateKey", "odd-key-props", {"algorithm": "ED25519"})

    registry = run_components(body)
    violations = run_policies(registry, "test")  # must not raise
    assert all(v.line() for v in violations)


@pytest.mark.parametrize("text, line", [
    ("{not json", "policy.json: line 1: not valid JSON (Expecting property name enclosed in double quotes)"),
    ('["broker-no-anonymous"]', "policy.json: must be a JSON object of policy name to enforcement level "
                                "(mandatory, advisory, disabled, remediate) or settings"),
    ('{"broker-no-anonymous": "mandatry"}', 'policy.json: broker-no-anonymous: "mandatry" is not allowed '
                                           "(use mandatory, advisory, disabled, remediate, or an object of settings)"),
    ('{"broker-no-anonymous": {"enforcementLevel": 3}}', "policy.json: broker-no-anonymous.enforcementLevel: 3 is "
                                                        "not allowed (use mandatory, advisory, disabled, remediate)"),
], ids=["syntax", "not-an-object", "unknown-level", "level-not-a-string"])
def test_bad_policy_config_is_a_config_error(tmp_path, text, line):
    path = tmp_path / "policy.json"
    path.write_text(text)
    with pytest.raises(StackConfigError) as raised:
        read_overrides(path)
    assert raised.value.lines == [line]


# ------------------------------------------------------------------------------------------------ up --local


def _ignore_sigint():
    # what a shell does to a background job (`cmd &`) when job control is off, as in scripts
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_local_stops_on_signal_when_started_in_the_background(tmp_path, stop):
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed (bash .ci/run installs it)")
    # The shipped dev stack (Pulumi.dev.yaml, seed in the repository's .estate/dev), run from tmp_path so that
    # .estate/local/connection.json and out/dev are written there: nothing shared with other runs.
    command = [sys.executable, "-m", "estate", "up", "--local", "--stack", "dev"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with running_up(command, tmp_path, env, tmp_path / ".estate" / "local" / "connection.json",
                    stderr=tmp_path / "stderr.txt", preexec_fn=_ignore_sigint) as (proc, lines, pids):
        assert pids and all(alive(pid) for pid in pids)

        proc.send_signal(stop)
        code = proc.wait(timeout=60)
        rest = []
        while (line := lines.get(timeout=10)) is not None:
            rest.append(line)
        assert (code, rest) == (0, ["stopping\n"]), (tmp_path / "stderr.txt").read_text()
        assert [pid for pid in pids if alive(pid)] == []
        assert TRACEBACK not in (tmp_path / "stderr.txt").read_text()
