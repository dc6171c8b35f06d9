"""`estate diff` from the command line, as a reviewer runs it: the dev stack against a changed copy (same seeds),
and the program at a git ref against the working tree."""

from __future__ import annotations

import json

import pytest

from mqtt_estate.estate.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, main
from tests.conftest import ROOT

DEV = (ROOT / "Pulumi.dev.yaml").read_text()
NEW_USER = "    - name: sensor-09\n      role: device\n      zone: production\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stack(tmp_path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def diff(capsys, tmp_path, changed: str, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "diff", "--stack", "dev", "--old", stack(tmp_path, "old", DEV),
               "--config", stack(tmp_path, "new", changed), *extra)


def test_adding_a_user_updates_secrets_in_place_and_restarts_nothing(capsys, tmp_path):
    code, out, err = diff(capsys, tmp_path, DEV.replace("  mqtt-estate:users:\n", "  mqtt-estate:users:\n" + NEW_USER))
    assert code == EXIT_OK, err
    changed = [line for line in out.splitlines() if line.startswith("  ") and "kubernetes:" in line]
    assert changed == ["  ~ kubernetes:core/v1:Secret  mqtt-dev/mosquitto-auth  update"]
    assert "Pods that restart: none" in out and "to replace" not in out
    assert "$7$" not in out and "sensor-09" not in out  # the password file's lines are secret


def test_a_listener_change_rolls_the_brokers(capsys, tmp_path):
    changed = DEV.replace("    preset: standard-broker\n", "    preset: standard-broker\n    limits:\n"
                                                             "      maxConnections: 500\n")
    code, out, _ = diff(capsys, tmp_path, changed, "--format", "markdown")
    assert code == EXIT_OK
    assert "**Pods restart:** `StatefulSet mqtt-dev/mosquitto`" in out
    assert "| `+-` | `ConfigMap mqtt-dev/mosquitto-config-" in out and "create-before-delete" in out
    assert "the pod template changed: the controller rolls the pods" in out


def test_a_storage_size_change_replaces_the_statefulset_and_says_why(capsys, tmp_path):
    changed = DEV.replace("    preset: standard-broker\n", "    preset: standard-broker\n    persistence:\n"
                                                             "      size: 50Gi\n")
    code, out, err = diff(capsys, tmp_path, changed, "--json")
    assert code == EXIT_OK, err
    document = json.loads(out)
    (sts,) = [s for s in document["steps"] if s["kind"] == "StatefulSet"]
    assert sts["action"] == "replace" and sts["deleteBeforeReplace"] is True
    assert {r["forceNew"] for r in sts["reasons"]} == {".spec.volumeClaimTemplates"}
    assert any("diff.go:196-205" in why for why in sts["why"])
    # orphan deletion: the pods keep running and are adopted, so none restarts for a size change
    assert document["podsRestart"] == [] and sts["rollsPods"] is False
    assert any(f["after"] == '"50Gi"' for f in sts["fields"])


def test_against_a_git_ref(capsys, tmp_path):
    """The program at HEAD (its own code, exported with git archive) against the working tree with a user added:
    the auth Secret is among the updates (the working tree may hold other changes of its own)."""
    code, out, err = run(capsys, "diff", "--stack", "dev", "--base", "HEAD", "--config",
                         stack(tmp_path, "new", DEV.replace("  mqtt-estate:users:\n",
                                                            "  mqtt-estate:users:\n" + NEW_USER)))
    assert code == EXIT_OK, err
    assert "  ~ kubernetes:core/v1:Secret  mqtt-dev/mosquitto-auth  update" in out


def test_mistakes_are_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "diff", "--stack", "dev", "--base", "no-such-ref-anywhere")
    assert code == EXIT_FAILED and err.count("\n") == 1 and "no-such-ref-anywhere" in err, err
    code, _, err = run(capsys, "diff", "--stack", "dev", "--old", str(tmp_path / "missing.yaml"))
    assert code == EXIT_CONFIG and "missing.yaml" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as both:
        main(["diff", "--stack", "dev", "--base", "HEAD", "--old", "x.yaml"])
    assert both.value.code == 2
