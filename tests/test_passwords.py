"""Our `$7$` hashes against mosquitto's own tool: same algorithm, same bytes for the same salt."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from mqtt_estate.components.passwords import deterministic_salt, hash_password, password_file


def test_matches_mosquitto_passwd(tmp_path):
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.fail("mosquitto_passwd missing (bash .ci/run installs the mosquitto package)")
    path = tmp_path / "passwd"
    path.write_text("")
    subprocess.run([tool, "-b", str(path), "alice", "s3cret-pw"], check=True)
    user, produced = path.read_text().strip().split(":", 1)
    _, seven, iterations, salt_b64, _ = produced.split("$")
    assert seven == "7"
    ours = hash_password("s3cret-pw", base64.b64decode(salt_b64), int(iterations))
    assert ours == produced


def test_salt_is_deterministic_and_scoped():
    assert deterministic_salt("ns/b", "alice") == deterministic_salt("ns/b", "alice")
    assert deterministic_salt("ns/b", "alice") != deterministic_salt("ns/b", "bob")
    assert deterministic_salt("ns/b", "alice") != deterministic_salt("other/b", "alice")


def test_file_is_sorted_and_stable():
    text = password_file({"zed": ("a", 1000), "amy": ("b", 101)}, "s")
    assert [line.split(":")[0] for line in text.splitlines()] == ["amy", "zed"]
    assert text == password_file({"amy": ("b", 101), "zed": ("a", 1000)}, "s")
