"""Packaging (issue 11): one import package, `mqtt_estate`, however the repository is installed or run.

Everything here runs offline: wheels are built with the machine's setuptools (`--no-build-isolation`, pinned in
tests/requirements.txt) and pip never looks at an index (`--no-index`). Every install goes into a fresh virtualenv
outside the repository, made with `--system-site-packages` so pulumi and the providers come from the machine and
only mqtt-estate itself is installed (`--no-deps`); the virtualenvs are checked not to see an mqtt_estate before
the install, so a copy elsewhere on the machine cannot mask a failure. Builds run on a copy of the working tree
(never in the repository, where setuptools would leave build/ and whose stale build/lib could leak into a wheel).

What pip and setuptools do, in the versions pinned or used here (pip 23.2, setuptools 80.10):
- `pip install <dir>` builds a local directory in place, not through an sdist: pip/_internal/operations/prepare.py
  309-311. `pip install git+file://...` clones first (`git clone --filter=blob:none`, pip/_internal/vcs/git.py
  261-286), so it installs what is committed, not the working tree.
- `--no-build-isolation` alone does not check [build-system].requires (pip/_internal/distributions/sdist.py 34-51:
  only with `--check-build-dependencies`), so the tests pass that too: an old setuptools fails loudly here
  instead of building a broken wheel (setuptools 65 has no bdist_wheel without the `wheel` package).
- An editable install of this layout (package-dir maps folders outside mqtt_estate/) gets setuptools' meta-path
  finder, not a .pth of the project root (setuptools/command/editable_wheel.py 364-388: `_simple_layout` is false,
  so `_TopLevelFinder`), which maps exactly mqtt_estate and its four subpackages to the checkout's folders and
  adds no top-level `components` or `stacks`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import mqtt_estate

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"components": "mqtt_estate/components", "stacks": "mqtt_estate/stacks", "estate": "mqtt_estate/estate",
          "policy": "mqtt_estate/policy", "mqtt_estate": "mqtt_estate"}
"""Repository folder -> where pyproject.toml's package-dir puts it in a wheel."""
FOREIGN = ("components", "stacks", "estate", "policy")
"""Top-level names the repository's folders must never be installed (or imported) as."""
OFFLINE = ["--no-deps", "--no-index", "--disable-pip-version-check", "-q"]
BUILD = [*OFFLINE, "--no-build-isolation", "--check-build-dependencies"]


def _env() -> dict[str, str]:
    """The environment of every child: nothing that would put another mqtt_estate on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"  # a ~/.local mqtt_estate would mask a broken install
    return env


def _run(args, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True)
    if ok:
        command = " ".join(map(str, args))
        assert proc.returncode == 0, f"{command} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _json_out(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _source_files(cached_only: bool = False) -> list[str]:
    """The working tree's files git would ship: tracked (staged or not) plus, unless cached_only, untracked but not
    ignored ones (no .estate/, out/, venv/, caches)."""
    listing = ["ls-files", "-z", "--cached"] + ([] if cached_only else ["--others", "--exclude-standard"])
    proc = subprocess.run(["git", *listing], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout: {proc.stderr.strip()}")
    return sorted({f for f in proc.stdout.split("\0") if f and (ROOT / f).is_file()})


def _copy_tree(dest: Path, files: list[str]) -> Path:
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


def _new_venv(path: Path) -> Path:
    """A virtualenv that sees the machine's packages (pulumi, providers, pip, setuptools) but no mqtt_estate yet."""
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", path], cwd=path.parent)
    probe = _run([_python(path), "-c", "import mqtt_estate"], cwd=path.parent, ok=False)
    assert probe.returncode != 0 and "No module named 'mqtt_estate'" in probe.stderr, (
        "an mqtt_estate is already importable outside the repository (installed on the machine?), which would mask "
        f"what these tests install: {probe.stdout}{probe.stderr}")
    return path


def _site_packages(venv: Path) -> Path:
    return Path(_run([_python(venv), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=venv).stdout.strip())


@pytest.fixture(scope="module")
def scratch():
    """One directory outside the repository for the module's trees, wheels and virtualenvs; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="mqtt-estate-packaging-")).resolve()
    assert ROOT not in path.parents, f"{path} must be outside the repository"
    (path / "elsewhere").mkdir()  # the working directory of the "new user" commands
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def shipped() -> list[str]:
    """The working tree's files, listed once: what the tree copy holds and the wheel is checked against."""
    return _source_files()


@pytest.fixture(scope="module")
def tree(scratch, shipped) -> Path:
    return _copy_tree(scratch / "tree", shipped)


@pytest.fixture(scope="module")
def wheel(scratch, tree) -> Path:
    _run([sys.executable, "-m", "pip", "wheel", *BUILD, "-w", scratch / "dist", tree], cwd=scratch)
    (built,) = (scratch / "dist").glob("mqtt_estate-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_venv(scratch, wheel) -> Path:
    venv = _new_venv(scratch / "wheel-venv")
    _run([_python(venv), "-m", "pip", "install", *OFFLINE, wheel], cwd=scratch)
    return venv


@pytest.fixture(scope="module")
def foreign_baseline(scratch) -> set[str]:
    """FOREIGN names the machine itself does not provide (only those can be asserted absent in a virtualenv)."""
    code = f"import importlib.util, json; print(json.dumps([n for n in {FOREIGN!r} if importlib.util.find_spec(n)]))"
    return set(FOREIGN) - set(_json_out(_run([sys.executable, "-c", code], cwd=scratch / "elsewhere")))


FOREIGN_REPORT = (f'"loaded": sorted(m for m in sys.modules if m.split(".")[0] in {FOREIGN!r}), '
                  f'"findable": [n for n in {FOREIGN!r} if importlib.util.find_spec(n)]')
"""JSON members a child prints (it imports importlib.util and sys): FOREIGN modules it loaded, and could load."""


def _assert_no_foreign(result: dict, baseline: set[str]) -> None:
    assert result["loaded"] == [] and not baseline & set(result["findable"]), result


def _wheel_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


# --- the wheel ----------------------------------------------------------------------------------------------------

def test_wheel_holds_mqtt_estate_and_nothing_else_at_top_level(wheel, shipped):
    """The issue's check: a wheel installs `mqtt_estate` (and its dist-info) and no top-level components, stacks,
    estate or policy; every file of the mapped folders is in it, under mqtt_estate/, including the start scripts,
    the policy pack's files and py.typed; the console script is declared."""
    names = _wheel_names(wheel)
    version = wheel.name.split("-")[1]
    assert version == mqtt_estate.__version__  # pyproject reads it from the package (one place)
    assert {n.split("/")[0] for n in names} == {"mqtt_estate", f"mqtt_estate-{version}.dist-info"}
    for folder in ("tests", "bench", "examples", "provider", "schema", "venv", "build"):
        assert not any(f"/{folder}/" in f"/{n}" for n in names), folder
    expected = {f"{MAPPED[rel.split('/')[0]]}/{rel.split('/', 1)[1]}" for rel in shipped
                if rel.split("/")[0] in MAPPED and "/" in rel}
    assert expected <= set(names), sorted(expected - set(names))
    assert {"mqtt_estate/py.typed", "mqtt_estate/components/mosquitto_start.sh",
            "mqtt_estate/components/haproxy_start.sh", "mqtt_estate/policy/PulumiPolicy.yaml"} <= set(names)
    with zipfile.ZipFile(wheel) as zf:
        entry_points = zf.read(f"mqtt_estate-{version}.dist-info/entry_points.txt").decode()
        metadata = zf.read(f"mqtt_estate-{version}.dist-info/METADATA").decode()
    assert "mqtt-estate = mqtt_estate.estate.cli:main" in entry_points
    assert "mosquitto-exporter = mqtt_estate.exporter.main:main" in entry_points  # the sidecar's program
    assert "Name: mqtt-estate" in metadata and "Requires-Dist: pulumi" in metadata


def test_wheel_built_through_an_sdist_is_the_same(scratch, tree, wheel):
    """`python -m build` (and any index) builds the wheel from the sdist, not from the checkout: the sdist must carry
    everything the wheel does (package data included)."""
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    name = _run([sys.executable, "-c", code, scratch / "sdist"], cwd=tree).stdout.strip().splitlines()[-1]
    with tarfile.open(scratch / "sdist" / name) as tar:
        tar.extractall(scratch / "sdist", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    unpacked = scratch / "sdist" / name.removesuffix(".tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", *BUILD, "-w", scratch / "sdist-dist", unpacked], cwd=scratch)
    (from_sdist,) = (scratch / "sdist-dist").glob("mqtt_estate-*.whl")
    assert sorted(_wheel_names(from_sdist)) == sorted(_wheel_names(wheel))


TRANSITIVE = {"pydantic_core": "pydantic"}
"""Imported directly but installed by the named dependency, which pins its exact version (declaring it too would
only invite resolver conflicts)."""


def test_every_third_party_import_is_a_declared_dependency(shipped):
    """The virtualenvs here borrow the machine's packages, so an undeclared dependency would not show in them: read
    the imports instead. The public components (and the config model they share) need only `dependencies`; the
    offline engine and the policy pack may also use the `offline` extra."""
    import ast
    import importlib.metadata
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    def canonical(requirement: str) -> str:
        return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {canonical(r) for r in project["dependencies"]}
    offline = core | {canonical(r) for r in project["optional-dependencies"]["offline"]}
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for rel in (f for f in shipped if f.endswith(".py") and f.split("/")[0] in MAPPED):
        allowed = offline if rel.split("/")[0] in ("estate", "policy") else core
        for node in ast.walk(ast.parse((ROOT / rel).read_text(), rel)):
            if isinstance(node, ast.Import):
                tops = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = {node.module.split(".")[0]}
            else:
                continue
            for top in tops - set(sys.stdlib_module_names) - {"mqtt_estate", "__future__"}:
                dists = {canonical(d) for d in distributions.get(TRANSITIVE.get(top, top), [top])}
                if not dists & allowed:
                    missing.append(f"{rel}:{node.lineno} imports {top} ({', '.join(sorted(dists))})")
    assert not missing, "undeclared in pyproject.toml:\n" + "\n".join(sorted(set(missing)))


# --- installed from the wheel, used from outside the repository ---------------------------------------------------

def test_installed_wheel_imports_from_anywhere(scratch, wheel, wheel_venv, foreign_baseline):
    """`from mqtt_estate import MosquittoBroker, HaProxyFrontend, NfsStorage, Pki` in a fresh virtualenv, from a
    directory outside the repository; the virtualenv's site-packages holds mqtt_estate and its dist-info only, and
    importing it loads no top-level components, stacks, estate or policy."""
    code = textwrap.dedent(f"""
        import importlib.util, json, sys
        from mqtt_estate import MosquittoBroker, HaProxyFrontend, NfsStorage, Pki
        import mqtt_estate.stacks.load, mqtt_estate.estate.cli
        print(json.dumps({{"files": [sys.modules[c.__module__].__file__
                                     for c in (MosquittoBroker, HaProxyFrontend, NfsStorage, Pki)],
                          "path": list(__import__("mqtt_estate").__path__), {FOREIGN_REPORT}}}))
    """)
    result = _json_out(_run([_python(wheel_venv), "-c", code], cwd=scratch / "elsewhere"))
    site = _site_packages(wheel_venv)
    assert all(Path(f).is_relative_to(site / "mqtt_estate") for f in result["files"]), result["files"]
    assert result["path"] == [str(site / "mqtt_estate")]  # the checkout fallback stays off in an install
    _assert_no_foreign(result, foreign_baseline)
    installed = {p.name for p in site.iterdir() if p.name != "__pycache__"}
    assert installed == {"mqtt_estate", wheel.name.split("-py")[0] + ".dist-info"}, installed


def test_console_script_and_module_entry_point(scratch, wheel_venv):
    """`mqtt-estate` is `python -m mqtt_estate.estate` is `python -m estate` in the checkout."""
    script = wheel_venv / "bin" / "mqtt-estate"
    assert script.is_file()
    help_text = _run([script, "--help"], cwd=scratch / "elsewhere").stdout
    assert "schema" in help_text and "render" in help_text
    from_script = json.loads(_run([script, "schema"], cwd=scratch / "elsewhere").stdout)
    from_module = json.loads(_run([_python(wheel_venv), "-m", "mqtt_estate.estate", "schema"],
                                  cwd=scratch / "elsewhere").stdout)
    from_checkout = json.loads(_run([sys.executable, "-m", "estate", "schema"], cwd=ROOT).stdout)
    assert from_script == from_module == from_checkout
    assert from_script["properties"]


MOCKS = """
class Mocks(pulumi.runtime.Mocks):
    resources = {}
    def new_resource(self, args):
        state = dict(args.inputs)
        if args.typ.startswith("tls:"):
            state.update(cert_pem="-----BEGIN CERTIFICATE-----\\n", private_key_pem="-----BEGIN PRIVATE KEY-----\\n",
                         cert_request_pem="-----BEGIN CERTIFICATE REQUEST-----\\n")
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = "p" * int(args.inputs.get("length", 32))
        Mocks.resources[args.name] = (args.typ, args.inputs)
        return [args.name + "-id", state]
    def call(self, args):
        return {}

pulumi.runtime.set_mocks(Mocks(), project="packaging", stack="test", preview=False)
"""
"""Pulumi mocks that record every resource (type, inputs) and return PEM-shaped TLS and random values."""
MOCK_PROGRAM = "import json, sys\nimport pulumi\n" + MOCKS


def test_installed_package_builds_a_broker_under_mocks(scratch, wheel_venv):
    """The installed components really work: Pki and MosquittoBroker register their resources, and the broker's
    ConfigMap carries the start script read from the installed package (mqtt_estate/components/*.sh)."""
    code = MOCK_PROGRAM + textwrap.dedent("""
        from mqtt_estate import MosquittoBroker, Pki, HaProxyFrontend  # HaProxyFrontend reads haproxy_start.sh

        @pulumi.runtime.test
        def program():
            pki = Pki("p", {"server_dns_names": ["mqtt.example.com"]})
            broker = MosquittoBroker("b", {
                "namespace": "ns", "users": [{"name": "admin", "role": "admin"}],
                "settings": {"listeners": [{"name": "mqtts", "port": 8883, "tls": True}], "persistence": False,
                             "max_connections": 10, "max_queued_messages": 10, "max_inflight_messages": 10,
                             "max_packet_size": 1024, "max_keepalive": 60},
                "ca_cert_pem": pki.ca_cert_pem, "server_cert_pem": pki.server_cert_pem,
                "server_key_pem": pki.server_key_pem})
            return broker.credentials

        program()
        config = next(inputs for typ, inputs in Mocks.resources.values() if typ == "kubernetes:core/v1:ConfigMap")
        print(json.dumps({"types": sorted({typ for typ, _ in Mocks.resources.values()}),
                          "data": config["data"], "module": sys.modules[MosquittoBroker.__module__].__file__}))
    """)
    result = _json_out(_run([_python(wheel_venv), "-c", code], cwd=scratch / "elsewhere"))
    assert {"mqtt-estate:index:Pki", "mqtt-estate:index:MosquittoBroker", "kubernetes:apps/v1:StatefulSet",
            "tls:index/locallySignedCert:LocallySignedCert"} <= set(result["types"])
    assert result["module"].startswith(str(_site_packages(wheel_venv)))
    assert (ROOT / "components" / "mosquitto_start.sh").read_text() in result["data"].values()


USER_PROJECT = {
    "components/__init__.py": "OWNER = 'user'\n",
    "components/broker.py": "raise ImportError('the user project components/broker.py was imported by mqtt_estate')\n",
    "stacks/__init__.py": "OWNER = 'user'\n",
    "estate.py": "OWNER = 'user'\n",
}
"""A user's own project with the generic names the issue worries about (and a trap if mqtt_estate reached them)."""

USER_CHECK = """
import json, sys
{prelude}
import components, stacks, estate
from mqtt_estate import MosquittoBroker, Pki
import mqtt_estate.components.broker, mqtt_estate.stacks.load, mqtt_estate.estate.cli
import components as again
print(json.dumps({{"user": [components.OWNER, stacks.OWNER, estate.OWNER, again is components],
                   "user_files": [components.__file__, stacks.__file__, estate.__file__],
                   "ours": mqtt_estate.components.broker.__file__}}))
"""


@pytest.fixture(scope="module")
def user_project(scratch) -> Path:
    project = scratch / "user-project"
    for rel, text in USER_PROJECT.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    return project


@pytest.mark.parametrize("order", ["user-first", "mqtt_estate-first"])
def test_user_components_package_beside_installed_wheel(wheel_venv, user_project, order):
    """A project with its own top-level `components`, `stacks` and `estate` (run from its directory, so they come
    first on sys.path) uses mqtt_estate beside them: both work, in either import order, and neither sees the
    other's modules."""
    prelude = "import mqtt_estate.components.broker" if order == "mqtt_estate-first" else ""
    result = _json_out(_run([_python(wheel_venv), "-c", USER_CHECK.format(prelude=prelude)], cwd=user_project))
    assert result["user"] == ["user", "user", "user", True]
    assert all(Path(f).is_relative_to(user_project) for f in result["user_files"])
    assert result["ours"].startswith(str(_site_packages(wheel_venv)))


# --- editable and git installs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def editable_venv(scratch) -> Path:
    """`pip install -e <checkout>` of the repository itself. It writes nothing into the checkout: the egg-info and
    build directories are temporary (setuptools/command/editable_wheel.py 203 and 342-344); only the opt-in strict
    mode would create build/__editable__.* there (line 376)."""
    venv = _new_venv(scratch / "editable-venv")
    _run([_python(venv), "-m", "pip", "install", *BUILD, "-e", ROOT], cwd=scratch)
    return venv


def test_editable_install_imports_the_checkout(scratch, editable_venv, foreign_baseline):
    code = textwrap.dedent(f"""
        import importlib.util, json, sys
        from mqtt_estate import MosquittoBroker, HaProxyFrontend, NfsStorage, Pki
        import mqtt_estate.components.broker, mqtt_estate.stacks.build
        print(json.dumps({{"broker": mqtt_estate.components.broker.__file__,
                          "build": mqtt_estate.stacks.build.__file__, {FOREIGN_REPORT}}}))
    """)
    result = _json_out(_run([_python(editable_venv), "-c", code], cwd=scratch / "elsewhere"))
    assert result["broker"] == str(ROOT / "components" / "broker.py")
    assert result["build"] == str(ROOT / "stacks" / "build.py")
    _assert_no_foreign(result, foreign_baseline)
    schema = json.loads(_run([editable_venv / "bin" / "mqtt-estate", "schema"], cwd=scratch / "elsewhere").stdout)
    assert schema["properties"]


def test_pip_install_from_git(scratch, wheel_venv):
    """`pip install git+<repo>`: pip clones the repository and installs what is committed. The working tree here
    may be ahead of HEAD (and CI's checkout is HEAD), so the test commits the files git tracks (their working-tree
    content) to a scratch repository and installs from that: a module that was never `git add`ed fails here. The
    install matches the wheel's, file for file."""
    tracked = _source_files(cached_only=True)
    untracked = [f for f in set(_source_files()) - set(tracked) if f.split("/")[0] in MAPPED]
    assert not untracked, f"package files git does not track (a git install would lack them; git add them): {untracked}"
    repo = _copy_tree(scratch / "git-repo", tracked)
    git = ["git", "-c", "user.name=packaging-test", "-c", "user.email=packaging@test.invalid",
           "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    _run([*git, "init", "-q"], cwd=repo)
    _run([*git, "add", "-A"], cwd=repo)
    _run([*git, "commit", "-q", "--no-verify", "-m", "snapshot"], cwd=repo)
    venv = _new_venv(scratch / "git-venv")
    _run([_python(venv), "-m", "pip", "install", *BUILD, f"git+file://{repo}"], cwd=scratch)
    _run([_python(venv), "-c", "from mqtt_estate import MosquittoBroker, HaProxyFrontend, NfsStorage, Pki"],
         cwd=scratch / "elsewhere")

    def files(v: Path) -> set[str]:
        site = _site_packages(v)
        return {str(p.relative_to(site)) for p in site.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and ".dist-info" not in str(p)}

    assert files(venv) == files(wheel_venv)


# --- the source checkout ------------------------------------------------------------------------------------------

SOURCE_CHECK = """
import json, sys
from pathlib import Path
sys.path[:0] = {paths!r}
{prelude}
import mqtt_estate.components.broker, mqtt_estate.stacks.build, mqtt_estate.estate.cli
from mqtt_estate import MosquittoBroker, HaProxyFrontend, NfsStorage, Pki
import mqtt_estate.policy.estate_policies
files = {{}}
for name, mod in list(sys.modules.items()):
    f = getattr(mod, "__file__", None)
    if f and Path(f).resolve().is_relative_to({root!r}):
        files.setdefault(str(Path(f).resolve()), []).append(name)
print(json.dumps({{"broker": mqtt_estate.components.broker.__file__,
                   "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {foreign!r}),
                   "twice": {{f: n for f, n in files.items() if len(n) > 1}},
                   "names": sorted(n for ns in files.values() for n in ns)}}))
"""


def test_source_checkout_maps_the_root_folders(scratch):
    """With only the repository root on sys.path (the Pulumi program, the policy pack, the tests),
    `mqtt_estate.components.broker` is the root's components/broker.py, and nothing is loaded a second time under a
    top-level name (no `components`, `stacks`, `estate` or `policy` in sys.modules)."""
    code = SOURCE_CHECK.format(paths=[str(ROOT)], prelude="", root=str(ROOT), foreign=FOREIGN)
    result = _json_out(_run([sys.executable, "-c", code], cwd=scratch / "elsewhere"))
    assert result["broker"] == str(ROOT / "components" / "broker.py")
    assert result["loaded"] == [] and result["twice"] == {}, result
    assert all(n == "mqtt_estate" or n.startswith("mqtt_estate.") for n in result["names"]), result["names"]


def test_user_components_package_beside_source_checkout(user_project):
    """The same user project with the checkout (not an install) on sys.path after it."""
    prelude = f"sys.path.append({str(ROOT)!r})"
    result = _json_out(_run([sys.executable, "-c", USER_CHECK.format(prelude=prelude)], cwd=user_project))
    assert result["user"] == ["user", "user", "user", True]
    assert all(Path(f).is_relative_to(user_project) for f in result["user_files"])
    assert result["ours"] == str(ROOT / "components" / "broker.py")


# --- `pulumi up` in the repository --------------------------------------------------------------------------------

LANGUAGE_HOST = """
import json, os, runpy, sys
import pulumi
""" + MOCKS + f"""
pulumi.runtime.set_all_config(json.loads(sys.argv[2]), [])
os.chdir(sys.argv[1])                                # --pwd: pulumi-language-python-exec 148-149

@pulumi.runtime.test
def program():
    runpy.run_path(".", run_name="__main__")         # the entry point ".": pulumi-language-python-exec 188

program()
import mqtt_estate, mqtt_estate.stacks.build
print(json.dumps({{"package": mqtt_estate.__file__, "build": mqtt_estate.stacks.build.__file__,
                  "types": sorted({{typ for typ, _ in Mocks.resources.values()}}),
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {FOREIGN!r})}}))
"""


def test_pulumi_program_runs_from_the_checkout_without_installing(scratch):
    """`pulumi up` in the repository (Pulumi.yaml: runtime python, toolchain pip, virtualenv venv) runs __main__.py
    with the project's virtualenv, in which only requirements.txt is installed, never mqtt-estate itself; the
    program must find mqtt_estate in the checkout. How the Python language host runs it (pulumi/pulumi source at
    commit 1b59498, sdk/.version 3.260.0, the newest snapshot at hand):
    - the engine runs the project root with entry point "." when Pulumi.yaml has no `main:`
      (pkg/engine/project.go 45-50), and the root reaches the exec script as `--pwd`
      (pkg/resource/deploy/program_source.go 131; sdk/python/cmd/pulumi-language-python/main.go 1207-1227);
    - the host starts `<virtualenv>/bin/python pulumi-language-python-exec ...` (main.go 1021-1023 and 1052;
      sdk/python/toolchain/pip.go 178-190), setting no working directory for it;
    - the exec script chdirs to `--pwd` (sdk/python/cmd/pulumi-language-python-exec 148-149) and runs
      `runpy.run_path(".", run_name="__main__")` (line 188), and runpy puts "." first on sys.path for a
      directory (CPython 3.11 Lib/runpy.py 296), so `mqtt_estate` comes from the checkout root;
    - `pulumi install` with toolchain pip creates the virtualenv and installs `-r requirements.txt` only
      (pip.go 444-551; the `pip install <dir>` of main.go 1342-1366 is for plugins), so no installed copy
      shadows the checkout (and one would not: "." comes first).
    This test does the same with a virtualenv that has the machine's packages and no mqtt_estate, a launcher
    outside the repository, and the dev stack's config under Pulumi mocks."""
    import yaml

    venv = _new_venv(scratch / "pulumi-venv")
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    stack = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    config = {k: v["value"] for k, v in project.get("config", {}).items() if isinstance(v, dict) and "value" in v}
    config.update(stack["config"])
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    launcher = scratch / "language-host" / "pulumi-language-python-exec.py"
    launcher.parent.mkdir()
    launcher.write_text(LANGUAGE_HOST)
    result = _json_out(_run([_python(venv), launcher, ROOT, json.dumps(config)], cwd=scratch / "elsewhere"))
    assert result["package"] == str(ROOT / "mqtt_estate" / "__init__.py")
    assert result["build"] == str(ROOT / "stacks" / "build.py")
    assert {"mqtt-estate:index:MosquittoBroker", "mqtt-estate:index:Pki"} <= set(result["types"])
    assert result["loaded"] == [], result["loaded"]
