"""`estate users add|remove|rotate|list` (estate/users_command.py, estate/users_edit.py): the stack file is edited
as text, every other byte kept; nothing is written unless the result validates; a refusal is one line, exit 2, the
file untouched; `rotate` gives a generated password, or a certificate user's key and certificate, a new value."""

from __future__ import annotations

import shutil
import stat

import pytest
from cryptography import x509

from mqtt_estate.components.pki import Pki
from mqtt_estate.estate import random_provider
from mqtt_estate.estate.cli import main
from mqtt_estate.estate.render import render
from mqtt_estate.estate.stackfile import MAX_FILE_BYTES, read_stack_file
from tests.conftest import ROOT
from tests.harness import TEST_SEED, by_name, run_components

DEV = ROOT / "Pulumi.dev.yaml"
PROD = ROOT / "Pulumi.prod.yaml"
BROKER = """config:
  mqtt-estate:broker:
    name: mosquitto
    acl:
      factory:
        zones: [production, quality]
"""


def users(capsys, path, *argv):
    """Run `estate users ...` on `path` in-process: (exit code, stdout, stderr)."""
    code = main(["users", *argv, "--config", str(path), "--program", str(ROOT)])
    out, err = capsys.readouterr()
    return code, out, err


def copy(tmp_path, source=DEV, name="Pulumi.dev.yaml"):
    target = tmp_path / name
    shutil.copyfile(source, target)
    return target


def write(tmp_path, text: str, name="Pulumi.t.yaml", newline="\n"):
    target = tmp_path / name
    target.write_bytes(text.replace("\n", newline).encode())
    return target


def refused(capsys, path, *argv) -> str:
    """The one line a refused command prints; the file is left byte for byte as it was, and no temp file."""
    before = path.read_bytes()
    code, out, err = users(capsys, path, *argv)
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    return err.strip()


# --- add --------------------------------------------------------------------------------------------------------

def test_add_inserts_the_item_and_keeps_every_other_byte(tmp_path, capsys):
    path = copy(tmp_path)
    path.chmod(0o640)
    old = path.read_text().splitlines(keepends=True)
    code, out, _ = users(capsys, path, "add", "sensor-03", "--zone", "production")
    assert code == 0
    new = path.read_text().splitlines(keepends=True)
    added = ["    - name: sensor-03\n", "      role: device\n", "      zone: production\n"]
    assert new == old + added  # the dev stack's list is its last key
    assert "+    - name: sensor-03" in out and "added sensor-03" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    user = read_stack_file(path).estate.users[-1]
    assert (user.name, user.role, user.zone, user.rotation) == ("sensor-03", "device", "production", 0)


def test_add_follows_the_lists_own_indentation_and_comments(tmp_path, capsys):
    path = write(tmp_path, BROKER + """  mqtt-estate:users:
  # people
  -   name: admin    # inline
      role: admin
      # admin's own note
  # a trailing remark at the dash column

  mqtt-estate:pki:
    leafValidityHours: 8760
""")
    old = path.read_text()
    assert users(capsys, path, "add", "edge-1", "--role", "edge-node", "--group", "g1")[0] == 2  # no sparkplug acl
    assert users(capsys, path, "add", "true")[0] == 0  # a name YAML would read as a boolean is quoted
    expected = old.replace("      # admin's own note\n", "      # admin's own note\n  -   name: 'true'\n"
                                                            "      role: device\n")
    assert path.read_text() == expected
    assert [u.name for u in read_stack_file(path).estate.users] == ["admin", "true"]


def test_add_creates_the_key_at_the_end_of_config(tmp_path, capsys):
    path = write(tmp_path, "# no users yet\n" + BROKER.replace("[production, quality]\n",
                                                               "[production, quality]  # zones\n")
                 + "    # about the acl\n  # about the config\nsecretsprovider: passphrase\n")
    old = path.read_text()
    assert users(capsys, path, "add", "admin", "--role", "admin")[0] == 0
    expected = old.replace("    # about the acl\n", "    # about the acl\n  mqtt-estate:users:\n    - name: admin\n"
                                                     "      role: admin\n")
    assert path.read_text() == expected


@pytest.mark.parametrize("empty", ["", " []", " ~", " []  # none yet"])
def test_add_to_an_empty_list(tmp_path, capsys, empty):
    path = write(tmp_path, BROKER + f"  mqtt-estate:users:{empty}\n  mqtt-estate:namespace:\n    name: x\n")
    assert users(capsys, path, "add", "admin", "--role", "admin")[0] == 0
    assert [u.name for u in read_stack_file(path).estate.users] == ["admin"]
    assert "    - name: admin\n      role: admin\n  mqtt-estate:namespace:\n" in path.read_text()


def test_add_to_a_list_of_flow_items_writes_a_flow_item(tmp_path, capsys):
    path = write(tmp_path, BROKER + "  mqtt-estate:users:\n    - {name: admin, role: admin}\n")
    assert users(capsys, path, "add", "s1", "--zone", "quality")[0] == 0
    assert path.read_text().endswith("    - {name: admin, role: admin}\n"
                                     "    - {name: s1, role: device, zone: quality}\n")
    assert users(capsys, path, "rotate", "admin")[0] == 0
    assert "    - {name: admin, role: admin, rotation: 1}\n" in path.read_text()


def test_crlf_file_stays_crlf(tmp_path, capsys):
    path = write(tmp_path, DEV.read_text(), newline="\r\n")
    old = path.read_bytes()
    assert users(capsys, path, "add", "sensor-03")[0] == 0
    assert path.read_bytes() == old + b"    - name: sensor-03\r\n      role: device\r\n"
    assert users(capsys, path, "rotate", "sensor-01")[0] == 0
    assert b"      zone: production\r\n      rotation: 1\r\n    - name: sensor-02\r\n" in path.read_bytes()
    assert users(capsys, path, "remove", "sensor-03")[0] == 0
    assert users(capsys, path, "remove", "sensor-01")[0] == 0
    sensor_01 = b"    - name: sensor-01\r\n      role: device\r\n      zone: production\r\n"
    assert path.read_bytes() == old.replace(sensor_01, b"")


def test_a_missing_final_newline_stays_missing(tmp_path, capsys):
    path = write(tmp_path, DEV.read_text().rstrip("\n"))
    old = path.read_text()
    assert users(capsys, path, "add", "sensor-03")[0] == 0
    assert path.read_text() == old + "\n    - name: sensor-03\n      role: device"
    assert users(capsys, path, "rotate", "sensor-03")[0] == 0
    assert path.read_text() == old + "\n    - name: sensor-03\n      role: device\n      rotation: 1"
    assert users(capsys, path, "remove", "sensor-03")[0] == 0
    assert path.read_text() == old


# --- remove -----------------------------------------------------------------------------------------------------

def test_remove_takes_the_items_lines_and_its_own_trailing_comments(tmp_path, capsys):
    text = BROKER + """  mqtt-estate:users:
    # the admins
    - name: admin   # first
      role: admin
    - name: sensor-01
      role: device
      zone: production
      # sensor-01 sits on line 3
    # sensor-02 replaced the old one
    - name: sensor-02
      role: device

  # end of users
"""
    path = write(tmp_path, text)
    code, out, _ = users(capsys, path, "remove", "sensor-01")
    assert code == 0 and "removed sensor-01 (mqtt-estate:users[1])" in out
    assert path.read_text() == text.replace("    - name: sensor-01\n      role: device\n      zone: production\n"
                                            "      # sensor-01 sits on line 3\n", "")
    assert users(capsys, path, "remove", "admin")[0] == 0
    assert "    # the admins\n    # sensor-02 replaced the old one\n    - name: sensor-02\n" in path.read_text()


def test_remove_the_last_user_leaves_an_empty_list(tmp_path, capsys):
    path = write(tmp_path, BROKER + "  mqtt-estate:users:\n    - name: admin\n      role: admin\n")
    assert users(capsys, path, "remove", "admin")[0] == 0  # the checks do not require an admin
    assert path.read_text() == BROKER + "  mqtt-estate:users:\n"
    assert read_stack_file(path).estate.users == []


# --- refusals -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, line", [
    (["add", "sensor-01"], "mqtt-estate:users[4].name: 'sensor-01' is already a user (users[2])"),
    (["add", "mosquitto-bridge"], "mqtt-estate:users[4].name: 'mosquitto-bridge' is the identity of the brokers' "
                                  "bridges"),
    (["add", "mosquitto-frontend-check"], "mqtt-estate:users[4].name: 'mosquitto-frontend-check' is the identity of "
                                          "the frontend's health checks"),
    (["add", "two words"], "mqtt-estate:users[4].name: 'two words' is not allowed (use letters, digits, '_', '.' and "
                           "'-', at most 64, no spaces)"),
    (["add", "x\n  role: admin"], "mqtt-estate:users[4].name: 'x\\n  role: admin' is not allowed"),
    (["add", "op-1", "--role", "operator"], "mqtt-estate:users[4].role: 'operator' is not allowed (use admin, device, "
                                            "edge-node, host-application, dashboard or service)"),
    (["add", "op-1", "--auth", "token"], "mqtt-estate:users[4].auth: 'token' is not allowed"),
    (["add", "s9", "--zone", "cellar"], "mqtt-estate:users[4].zone: 'cellar' is not allowed (use one of "
                                        "broker.acl.factory.zones: production, quality, maintenance)"),
    (["add", "s9", "--auth", "certificate"], "mqtt-estate:users[4].auth: 'certificate' needs a listener with "
                                             "requireCertificate: true"),
    (["remove", "sensor-09"], "mqtt-estate:users: no user 'sensor-09' (users: admin, dashboard, sensor-01, sensor-02)"),
    (["rotate", "sensor-09"], "mqtt-estate:users: no user 'sensor-09'"),
])
def test_a_mistake_is_one_line_exit_2_and_the_file_untouched(tmp_path, capsys, argv, line):
    path = copy(tmp_path)
    err = refused(capsys, path, *argv)
    assert err.startswith(f"Pulumi.dev.yaml: {line}"), err


def test_rotate_refuses_a_supplied_password(tmp_path, capsys):
    path = write(tmp_path, DEV.read_text() + "  mqtt-estate:password-sensor-01: 'qG7#vL2!xR9$mT4&wZ8^kP3*nB6'\n",
                 name="local.yaml")
    err = refused(capsys, path, "rotate", "sensor-01")
    assert err == ("local.yaml: mqtt-estate:password-sensor-01: sensor-01's password is supplied, not generated, so "
                   "it cannot be rotated here: set a new one with `pulumi config set --secret "
                   "mqtt-estate:password-sensor-01 <new password>`")


def test_a_flow_list_is_refused_with_what_to_write(tmp_path, capsys):
    path = write(tmp_path, BROKER + "  mqtt-estate:users: [{name: admin, role: admin}]\n")
    for argv in (["add", "s1"], ["remove", "admin"], ["rotate", "admin"]):
        assert refused(capsys, path, *argv) == ("Pulumi.t.yaml: mqtt-estate:users: is written as a flow list ([...]); "
                                                "write it as a block list, one `- name: ...` item per user, to edit it "
                                                "with this command")


def test_hostile_files_are_refused_as_render_refuses_them(tmp_path, capsys):
    bomb = write(tmp_path, "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh")) + "config: {}\n")
    assert "aliases expand to more than" in refused(capsys, bomb, "add", "s1")
    bomb.unlink()
    big = write(tmp_path, BROKER + "#" * MAX_FILE_BYTES + "\n")
    assert "too large for a stack file" in refused(capsys, big, "add", "s1")


def test_a_file_that_does_not_validate_is_not_edited(tmp_path, capsys):
    path = write(tmp_path, BROKER + "  mqtt-estate:users:\n    - name: admin\n      role: admn\n")
    assert "mqtt-estate:users[0].role: 'admn' is not allowed" in refused(capsys, path, "add", "s1")


# --- rotate -------------------------------------------------------------------------------------------------------

def test_rotate_adds_then_raises_the_rotation_key(tmp_path, capsys):
    path = copy(tmp_path)
    old = path.read_text()
    code, out, _ = users(capsys, path, "rotate", "sensor-02")
    assert code == 0 and "users[3].rotation: 0 -> 1" in out and "a new password" in out
    assert path.read_text() == old + "      rotation: 1\n"
    assert users(capsys, path, "rotate", "sensor-02")[0] == 0
    assert path.read_text() == old + "      rotation: 2\n"
    assert read_stack_file(path).estate.users[3].rotation == 2


def test_keepers_give_a_new_generated_value_and_none_keep_the_old():
    inputs = {"length": 32, "special": False}
    plain = random_provider.random_password(TEST_SEED, "b-password-u", inputs)["result"]
    assert random_provider.random_password(TEST_SEED, "b-password-u", {**inputs, "keepers": None})["result"] == plain
    one = random_provider.random_password(TEST_SEED, "b-password-u", {**inputs, "keepers": {"rotation": "1"}})
    two = random_provider.random_password(TEST_SEED, "b-password-u", {**inputs, "keepers": {"rotation": "2"}})
    assert len({plain, one["result"], two["result"]}) == 3 and one["keepers"] == {"rotation": "1"}


def test_a_rotated_certificate_has_a_new_key_and_serial():
    def issued(rotations: dict) -> dict:
        registry = run_components(lambda: Pki("p", {"client_names": ["dev1", "dev2"], "client_rotations": rotations}))
        found = {}
        for user in ("dev1", "dev2"):
            suffix = f"-r{rotations[user]}" if rotations.get(user) else ""
            cert = by_name(registry, f"p-client-{user}-cert{suffix}").outputs["certPem"]
            key = by_name(registry, f"p-client-{user}-key{suffix}").outputs["privateKeyPem"]
            found[user] = (x509.load_pem_x509_certificate(cert.encode()).serial_number, key)
        return found

    before, after = issued({}), issued({"dev1": 1})
    assert after["dev2"] == before["dev2"]
    assert after["dev1"][0] != before["dev1"][0] and after["dev1"][1] != before["dev1"][1]


def test_the_edited_dev_stack_renders_the_new_user_and_only_the_rotated_password_changes(tmp_path, capsys, rendered,
                                                                                         state_dir):
    path = copy(tmp_path)
    assert users(capsys, path, "add", "sensor-03", "--zone", "maintenance")[0] == 0
    assert users(capsys, path, "rotate", "sensor-01")[0] == 0
    before = rendered("dev").registry.stack_outputs["credentials"]
    after_render = render("dev", path, out=tmp_path / "out", state_dir=state_dir)
    after = after_render.registry.stack_outputs["credentials"]
    assert after["sensor-01"] != before["sensor-01"]
    assert {u: after[u] for u in before if u != "sensor-01"} == {u: pw for u, pw in before.items() if u != "sensor-01"}
    passwd = after_render.out / "files" / "mosquitto" / "mosquitto" / "auth" / "passwd"
    assert [line.split(":")[0] for line in passwd.read_text().splitlines()] == sorted(after)
    assert "sensor-03" in after


def test_list_shows_each_user(tmp_path, capsys):
    path = copy(tmp_path, PROD, "Pulumi.prod.yaml")
    code, out, _ = users(capsys, path, "list")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "ROLE", "AUTH", "ZONE/GROUPS", "ROTATION", "PASSWORD"]
    assert rows[3] == ["edge-gw-01", "edge-node", "certificate", "Factory", "0", "-"]


def test_without_a_stack_or_file_it_says_what_to_give(capsys):
    assert main(["users", "list"]) == 2
    assert capsys.readouterr().err == "users: give --stack NAME (Pulumi.NAME.yaml) or --config FILE\n"
