"""`--program DIR`: the offline engine runs a Pulumi program of your own that uses the components.

The example program (examples/edge-site, built from Pki and MosquittoBroker directly) is rendered, judged by the
policy pack and booted on 127.0.0.1 with the smoke suite, all through the CLI in a subprocess, as a user runs it.
It runs from a copy in a temporary directory, so its seeds, render and local estate (written under the program's
directory) stay out of the checkout. Then the mistakes a user can make with a program of their own: each is one
line, the right exit code, no traceback and nothing in --out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mqtt_estate.estate import render as render_module
from mqtt_estate.estate.policy_run import _resources, mandatory, run_policies
from mqtt_estate.estate.program import find_program, load_program
from mqtt_estate.estate.engine import EngineError
from mqtt_estate.estate.render import evaluate
from mqtt_estate.estate.smoke import NOTHING_TO_CHECK, Check, passed, report
from mqtt_estate.estate.stackfile import ENCRYPTED, MAX_FILE_BYTES, read_program_stack_file, read_project_file
from mqtt_estate.stacks.errors import StackConfigError
from tests.conftest import ROOT
from tests.harness import alive, running_up
from tests.test_engine_robustness import BOMB_REFUSAL, TRACEBACK, billion_laughs

EXAMPLE = ROOT / "examples" / "edge-site"
STACK = "edge"
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
"""`python -m estate` from any directory finds this checkout (an installed package would not need it)."""


def estate(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "estate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240, env={**ENV, **(env or {})})


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def copy_example(directory: Path) -> Path:
    """A copy of examples/edge-site in `directory`/edge-site, without anything a run there left behind."""
    copy = directory / "edge-site"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns(".estate", "out", "venv", "__pycache__"))
    return copy


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return copy_example(tmp_path_factory.mktemp("program"))


@pytest.fixture(scope="module")
def rendered(example, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("render") / STACK
    return estate("render", "--program", str(example), "--stack", STACK, "--out", str(out)), out


def _objects(out: Path) -> list[dict]:
    return [yaml.safe_load(path.read_text()) for path in sorted((out / "k8s").glob("*.yaml"))]


def test_example_renders(rendered):
    proc, out = rendered
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    tree = (out / "resources.txt").read_text()
    assert tree.splitlines()[1].split() == ["+", "pulumi:pulumi:Stack", "edge-site-edge"]
    assert re.search(r"pulumi:providers:kubernetes +k8s$", tree, re.M)  # its own provider, a resource of its own
    objects = _objects(out)
    assert proc.stdout.endswith(f"rendered {len(objects)} Kubernetes objects to {out}\n")
    assert {o["metadata"].get("namespace", "mqtt-plant-a") for o in objects} == {"mqtt-plant-a"}
    # the stack file's values reached the program: a list (JSON-encoded, as Pulumi hands objects over) and text
    netpol = next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "mosquitto")
    assert [[peer["ipBlock"]["cidr"] for peer in rule["from"]] for rule in netpol["spec"]["ingress"]] == \
        [["10.20.0.0/16", "10.21.4.0/24"]] * 2
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "local-path"
    conf = (out / "files" / "mosquitto" / "mosquitto" / "config" / "mosquitto.conf").read_text()
    assert "listener 8884\n" in conf and "require_certificate true\n" in conf and "tls_version tlsv1.3\n" in conf
    assert conf.count("allow_anonymous true") == 1  # the loopback health listener only


def test_example_passes_the_policy_pack(example):
    proc = estate("policy", "--program", str(example), "--stack", STACK)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mandatory violations: 0" in proc.stdout.splitlines()


def test_urns_stack_resource_and_provider(example, tmp_path):
    _, registry = evaluate(STACK, state_dir=tmp_path, program=load_program(example))
    assert registry.project == "edge-site"
    assert all(f"urn:pulumi:{STACK}::edge-site::" in r.urn for r in registry.resources)
    assert _resources(registry, STACK)[-1][:3] == (
        "pulumi:pulumi:Stack", "edge-site-edge", "urn:pulumi:edge::edge-site::pulumi:pulumi:Stack::edge-site-edge")
    assert mandatory(run_policies(registry, STACK)) == []
    # every Kubernetes object (the broker's Secrets above all) goes through the program's own provider, which
    # updates Secrets in place
    provider = next(r for r in registry.resources if r.type == "pulumi:providers:kubernetes")
    assert provider.inputs == {"enableSecretMutable": "true"}
    kube = registry.of_type("kubernetes:")
    assert len(kube) > 10 and all(r.provider.startswith(f"{provider.urn}::") for r in kube)


def test_second_render_is_byte_identical(example, rendered, tmp_path):
    _, first = rendered
    again = estate("render", "--program", str(example), "--stack", STACK, "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert len(files) > 10
    for rel in files:
        assert (first / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel


def test_default_program_is_the_project_around_the_current_directory(example):
    """As the pulumi CLI finds its project: run inside it (here a directory below Pulumi.yaml), no --program.
    The render goes to out/<stack> in the program's directory."""
    below = example / "docs"
    below.mkdir(exist_ok=True)
    proc = estate("render", "--stack", STACK, cwd=below)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(f"to {example / 'out' / STACK}\n")
    assert "edge-site-edge" in (example / "out" / STACK / "resources.txt").read_text()


def _require_mosquitto() -> None:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed (bash .ci/run installs it)")


def _smoke_passed(stdout: str) -> bool:
    found = re.search(r"^smoke: (\d+) passed, 0 failed$", stdout, re.M)
    return bool(found) and int(found.group(1)) > 0


def test_up_local_boots_the_example_and_the_smoke_suite_passes(example, tmp_path):
    _require_mosquitto()
    proc = estate("up", "--local", "--program", str(example), "--stack", STACK, "--smoke", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _smoke_passed(proc.stdout), proc.stdout
    connection = json.loads((example / ".estate" / "local" / "connection.json").read_text())
    assert {lst["name"] for lst in connection["listeners"]} == {"mtls", "mqtts"}
    assert all(lst["host"] == "127.0.0.1" for lst in connection["listeners"])
    assert [p["pid"] for p in connection["brokers"] if alive(p["pid"])] == []  # --smoke stops what it started


def test_check_finds_the_connection_file_up_wrote(example, tmp_path):
    """`up --program DIR` (running until stopped), then `check --program DIR`, and `check` run inside DIR."""
    _require_mosquitto()
    command = [sys.executable, "-m", "estate", "up", "--local", "--program", str(example), "--stack", STACK,
               "--out", str(tmp_path / "out")]
    with running_up(command, ROOT, ENV, example / ".estate" / "local" / "connection.json") as (up, _, pids):
        named = estate("check", "--local", "--program", str(example))
        assert named.returncode == 0 and _smoke_passed(named.stdout), named.stdout + named.stderr
        inside = estate("check", "--local", cwd=example)
        assert inside.returncode == 0 and _smoke_passed(inside.stdout), inside.stdout + inside.stderr
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    assert [pid for pid in pids if alive(pid)] == []


def test_a_smoke_run_that_checks_nothing_fails(tmp_path):
    """A broker with no listener but its loopback health one boots, but the smoke suite has nothing to reach: no
    check is no pass, for `up --smoke` and for `check` on the connection file it wrote."""
    _require_mosquitto()
    program = copy_example(tmp_path)
    main = program / "__main__.py"
    text, count = re.subn(r'"listeners": \[\n.*?\n        \],', '"listeners": [],', main.read_text(), flags=re.S)
    assert count == 1
    main.write_text(text)
    up = estate("up", "--local", "--program", str(program), "--stack", STACK, "--smoke", "--out", str(tmp_path / "out"))
    assert up.returncode == 1, up.stdout + up.stderr
    assert up.stdout.splitlines()[-1] == NOTHING_TO_CHECK and up.stderr == ""
    connection = json.loads((program / ".estate" / "local" / "connection.json").read_text())
    assert connection["listeners"] == [] and connection["brokers"]  # it did boot
    check = estate("check", "--local", "--program", str(program))
    assert (check.returncode, check.stdout, check.stderr) == (1, NOTHING_TO_CHECK + "\n", "")


def test_smoke_verdict():
    ok, failed = Check("mqtts", "anonymous refused", True), Check("mqtts", "wrong password refused", False)
    assert (passed([]), passed([ok]), passed([ok, failed])) == (False, True, False)
    assert report([]) == NOTHING_TO_CHECK == "smoke: nothing to check: the estate has no listener the smoke suite " \
                                             "can reach"
    assert report([ok]).splitlines()[-1] == "smoke: 1 passed, 0 failed"


# ------------------------------------------------------------------------------------------------ mistakes

PROJECT = "name: shop\nruntime: python\n"
NOTHING = "import pulumi\npulumi.export('site', 'none')\n"


def _program(root: Path, pulumi_yaml: str = PROJECT, stack: str = "config: {}\n", main: str = NOTHING) -> Path:
    directory = root / "prog"
    write(directory, "Pulumi.yaml", pulumi_yaml)
    write(directory, "Pulumi.t.yaml", stack)
    write(directory, "__main__.py", main)
    return directory


def _missing(root):
    return root / "nowhere", "t", f"{root / 'nowhere'}: no such directory (--program names a Pulumi project " \
                                   "directory, with Pulumi.yaml)"


def _no_project_file(root):
    (root / "empty").mkdir()
    return root / "empty", "t", f"{root / 'empty'}: no Pulumi.yaml here (--program names a Pulumi project directory)"


def _not_a_mapping(root):
    directory = _program(root, pulumi_yaml="- name: shop\n")
    return directory, "t", f"{directory / 'Pulumi.yaml'}: the file must be a mapping with `name:` and `runtime:`"


def _other_runtime(root):
    directory = _program(root, pulumi_yaml="name: shop\nruntime: nodejs\n")
    return directory, "t", f"{directory / 'Pulumi.yaml'}: runtime: 'nodejs' cannot run offline (the offline " \
                           "engine runs Python programs: `runtime: python`)"


def _unknown_stack(root):
    directory = _program(root)
    return directory, "prod", f"Pulumi.prod.yaml: no such stack file: {directory / 'Pulumi.prod.yaml'}"


def _encrypted(root):
    directory = _program(root, stack="config:\n  hmiPassword:\n    secure: v1:Zm9vYmFy\n")
    return directory, "t", f"Pulumi.t.yaml: shop:hmiPassword: {ENCRYPTED}"


def _required_by_the_program(root):
    directory = _program(root, main="import pulumi\npulumi.Config().require('plc')\n")
    return directory, "t", "Pulumi.t.yaml: shop:plc: missing (the program requires it; set it in this file)"


def _raises(root):
    directory = _program(root, main="raise ValueError('no line PLC named\\n(check the site list)')\n")
    return directory, "t", f"error: {directory / '__main__.py'}: ValueError: no line PLC named (check the site list)"


def _alias_bomb(root):
    directory = _program(root)
    (directory / "Pulumi.t.yaml").write_text(billion_laughs(9))
    return directory, "t", f"Pulumi.t.yaml: line 9: alias *a3 {BOMB_REFUSAL}"


def _huge(root):
    directory = _program(root)
    (directory / "Pulumi.t.yaml").write_text("config:\n  shop:notes: " + "x" * (2 * MAX_FILE_BYTES) + "\n")
    size = (directory / "Pulumi.t.yaml").stat().st_size
    return directory, "t", f"Pulumi.t.yaml: {size} bytes is too large for a stack file (at most {MAX_FILE_BYTES} " \
                           "bytes; stack files need no such structure)"


def _project_file_bomb(root):
    directory = _program(root, pulumi_yaml=PROJECT + billion_laughs(9).replace("config:", "extra:", 1))
    return directory, "t", f"{directory / 'Pulumi.yaml'}: line 11: alias *a3 {BOMB_REFUSAL}"


MISTAKES = {
    "missing-directory": (_missing, 2), "no-Pulumi.yaml": (_no_project_file, 2),
    "Pulumi.yaml-not-a-mapping": (_not_a_mapping, 2), "runtime-not-python": (_other_runtime, 2),
    "unknown-stack": (_unknown_stack, 2), "encrypted-value": (_encrypted, 2),
    "program-requires-a-key": (_required_by_the_program, 2), "program-raises": (_raises, 1),
    "stack-file-alias-bomb": (_alias_bomb, 2), "2-MiB-stack-file": (_huge, 2),
    "Pulumi.yaml-alias-bomb": (_project_file_bomb, 2),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_mistake_is_one_line_and_writes_nothing(case, tmp_path):
    make, code = MISTAKES[case]
    directory, stack, line = make(tmp_path)
    out = tmp_path / "out"
    proc = estate("render", "--program", str(directory), "--stack", stack, "--out", str(out))
    assert (proc.returncode, proc.stderr.splitlines(), proc.stdout) == (code, [line], "")
    assert TRACEBACK not in proc.stderr
    assert not out.exists()


def test_up_with_nothing_to_run_says_so(tmp_path):
    out = tmp_path / "out"
    proc = estate("up", "--local", "--program", str(_program(tmp_path)), "--stack", "t", "--out", str(out))
    assert (proc.returncode, proc.stderr.splitlines(), proc.stdout) == (
        1, ["error: nothing to run locally: the program registered no MosquittoBroker"], "")
    assert not out.exists()


@pytest.mark.parametrize("main, problem", [
    ("pulumi.Config().require_int('retries')",
     "Pulumi.t.yaml: shop:retries: 'many' is not a valid int (the program reads it as one)"),
    ("raise pulumi.RunError('the site list is empty')", "__main__.py: the site list is empty"),  # no type: for users
], ids=["config-type", "run-error"])
def test_program_errors_in_process(tmp_path, main, problem):
    directory = _program(tmp_path, stack="config:\n  retries: many\n", main=f"import pulumi\n{main}\n")
    with pytest.raises((StackConfigError, EngineError)) as refused:
        evaluate("t", program=load_program(directory))
    lines = refused.value.lines if isinstance(refused.value, StackConfigError) else refused.value.problems
    assert [line.replace(f"{directory}/", "") for line in lines] == [problem]


def test_debug_shows_the_programs_traceback(tmp_path):
    directory, _, _ = _raises(tmp_path)
    proc = estate("render", "--program", str(directory), "--stack", "t", "--out", str(tmp_path / "out"),
                  env={"ESTATE_DEBUG": "1"})
    assert proc.returncode == 1
    assert f'File "{directory / "__main__.py"}", line 1' in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("mqtt_estate.estate.program.ProgramError: ")


# ------------------------------------------------------------------------------------------------ the files


def test_stack_file_is_read_as_pulumi_reads_it(tmp_path):
    project = read_project_file(write(tmp_path, "Pulumi.yaml", """
        name: shop
        runtime: {name: python}
        config:
          region: eu-1                       # short form of a project key: a default
          zones: {default: [a, b]}
          retries: {type: integer, default: 3}
          site: {type: string}               # declared, no default: every stack must set it
          aws:region: {value: eu-west-1}
          kubernetes:enableSecretMutable: true
    """))
    stack = read_program_stack_file(write(tmp_path, "Pulumi.t.yaml", """
        config:
          site: plant-a
          shop:config:retries: 5
          limits: {b: 2, a: [1, true, null]}
          other:flag: false
          when: 2024-05-01
    """), project)
    assert stack.pulumi_config == {
        "shop:site": "plant-a", "shop:retries": "5", "shop:limits": '{"a":[1,true,null],"b":2}',
        "other:flag": "false", "shop:when": "2024-05-01", "shop:region": "eu-1", "shop:zones": '["a","b"]',
        "aws:region": "eu-west-1", "kubernetes:enableSecretMutable": "true"}
    assert (stack.estate, stack.secret_keys) == (None, [])


def test_stack_file_mistakes_are_each_one_line(tmp_path):
    project = read_project_file(write(tmp_path, "Pulumi.yaml", PROJECT + "config:\n  site: {type: string}\n"))
    with pytest.raises(StackConfigError) as refused:
        read_program_stack_file(write(tmp_path, "Pulumi.t.yaml", """
            config:
              plc: a
              shop:plc: b
              a:b:c: 1
              token: {nested: [{secure: v1:abc}]}
        """), project)
    assert refused.value.lines == [
        "Pulumi.t.yaml: config.shop:plc: shop:plc is given twice",
        "Pulumi.t.yaml: config.a:b:c: not a config key (use <name> for the project's own, or <namespace>:<name>)",
        f"Pulumi.t.yaml: shop:token.nested[0]: {ENCRYPTED}",
        "Pulumi.t.yaml: shop:site: missing (Pulumi.yaml declares it without a value or default; set it in this file)",
    ]


def test_main_and_stack_config_dir_are_honoured(tmp_path):
    """`main: src` runs src/__main__.py from src (its working directory, first on sys.path, so a module beside it
    imports); `stackConfigDir: stacks` holds the stack files."""
    write(tmp_path, "Pulumi.yaml", PROJECT + "main: src\nstackConfigDir: stacks\n")
    write(tmp_path / "stacks", "Pulumi.t.yaml", "config:\n  site: plant-a\n")
    write(tmp_path / "src", "naming.py", "def site(config):\n    return config.require('site')\n")
    write(tmp_path / "src", "__main__.py", """
        import os
        import pulumi
        import naming
        pulumi.export("site", naming.site(pulumi.Config()))
        pulumi.export("cwd", os.getcwd())
    """)
    try:
        _, registry = evaluate("t", state_dir=tmp_path / "state", program=find_program(tmp_path))
    finally:
        sys.modules.pop("naming", None)  # the program's own module, imported in this process
    assert registry.stack_outputs == {"site": "plant-a", "cwd": str(tmp_path / "src")}


def test_installed_package_outside_a_project_says_where_to_run(tmp_path, monkeypatch):
    """An installed package ships the components, not this repository's program: outside a project there is
    nothing to run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(render_module, "PROGRAM", tmp_path / "not-shipped" / "__main__.py")
    with pytest.raises(StackConfigError) as refused:
        find_program(None)
    assert refused.value.lines == [f"{tmp_path}: no Pulumi.yaml here or in any directory above (run inside your "
                                   "Pulumi project, or pass --program DIR)"]
