"""The README's TypeScript and Pulumi YAML programs, read as written, against the provider's schema.

There is no Pulumi CLI, Node.js SDK or YAML engine here, so these programs cannot run. What a user of them would
hit first can still be checked: every property they set is one the schema (schema/provider.schema.json, what
`pulumi package add` generates the SDK from) knows, of the type it declares, and every required input is given.
The YAML program is parsed whole; the TypeScript one's object literals are read into data (they hold only
literals and references to other resources' outputs). tests/test_provider_schema.py proves the schema's inputs
build the components.
"""

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

SCHEMA = json.loads((ROOT / "schema" / "provider.schema.json").read_text())
README = (ROOT / "README.md").read_text()
REFERENCE = re.compile(r"^\$\{[\w.\[\]\"-]+\}$")
"""A Pulumi YAML interpolation of another resource's output (any type; the engine resolves it)."""
SCALARS = {"string": str, "integer": int, "number": (int, float), "boolean": bool}


def code_block(language: str, marker: str) -> str:
    """The README's ```<language> block that contains `marker`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README should hold exactly one ```{language} block with {marker!r}"
    return found[0]


def problems(value, spec: dict, path: str) -> list[str]:
    """Where `value` does not fit the schema property `spec`."""
    if isinstance(value, str) and REFERENCE.match(value):
        return []
    if "$ref" in spec:
        return object_problems(value, SCHEMA["types"][spec["$ref"].removeprefix("#/types/")], path)
    kind = spec.get("type")
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: a list expected, got {value!r}"]
        return [p for i, item in enumerate(value) for p in problems(item, spec["items"], f"{path}[{i}]")]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: a map expected, got {value!r}"]
        return [p for k, item in value.items() for p in problems(item, spec["additionalProperties"], f"{path}.{k}")]
    expected = SCALARS[kind]
    if isinstance(value, bool) and kind != "boolean" or not isinstance(value, expected):
        return [f"{path}: {kind} expected, got {value!r}"]
    return []


def object_problems(value, typ: dict, path: str) -> list[str]:
    """`typ` is a schema type (properties, required) or a resource (inputProperties, requiredInputs)."""
    if not isinstance(value, dict):
        return [f"{path}: an object expected, got {value!r}"]
    known = typ["inputProperties"] if "inputProperties" in typ else typ.get("properties", {})
    required = typ["requiredInputs"] if "inputProperties" in typ else typ.get("required", [])
    found = [f"{path}.{k}: not an input (known: {', '.join(sorted(known))})" for k in value if k not in known]
    found += [f"{path}.{k}: required input missing" for k in required if k not in value]
    return found + [p for k, item in value.items() if k in known for p in problems(item, known[k], f"{path}.{k}")]


def resource_problems(token: str, properties: dict, name: str) -> list[str]:
    resource = SCHEMA["resources"].get(token)
    if resource is None:
        return [f"{name}: no resource {token} in the schema"]
    return object_problems(properties, resource, name)


def typescript_literals(code: str) -> list[tuple[str, str, dict]]:
    """(component, name, args) for each `new mqtt.<Component>("<name>", { ... })` of the TypeScript block."""
    found = []
    for match in re.finditer(r'new mqtt\.(\w+)\("([\w-]+)", \{', code):
        depth, start = 0, match.end() - 1
        for end in range(start, len(code)):
            depth += {"{": 1, "}": -1}.get(code[end], 0)
            if depth == 0:
                break
        literal = re.sub(r"//[^\n]*", "", code[start:end + 1])
        literal = re.sub(r"([{,]\s*)(\w+)\s*:", r'\1"\2":', literal)  # keys
        literal = re.sub(r":\s*([A-Za-z_][\w.]*)(?=\s*[,}\]])",  # another resource's output
                         lambda m: {"true": ": True", "false": ": False"}.get(m[1], f': "${{{m[1]}}}"'), literal)
        found.append((match[1], match[2], ast.literal_eval(literal)))
    return found


def test_the_yaml_program_fits_the_schema():
    program = yaml.safe_load(code_block("yaml", "mqtt-estate:index:MosquittoBroker"))
    assert program["runtime"] == "yaml"
    assert program["packages"]["mqtt-estate"].endswith("/provider@v0.1.0")
    resources = program["resources"]
    assert {r["type"] for r in resources.values()} == {"mqtt-estate:index:Pki", "mqtt-estate:index:MosquittoBroker"}
    found = [p for name, r in resources.items() for p in resource_problems(r["type"], r["properties"], name)]
    assert found == []
    for reference in re.findall(r"\$\{(\w+)\.(\w+)\}", json.dumps(program)):  # outputs the components really have
        token = resources[reference[0]]["type"]
        assert reference[1] in SCHEMA["resources"][token]["properties"], reference


def test_the_typescript_program_fits_the_schema():
    code = code_block("typescript", "new mqtt.MosquittoBroker")
    literals = typescript_literals(code)
    assert [component for component, _, _ in literals] == ["Pki", "MosquittoBroker"]
    found = [p for component, name, args in literals
             for p in resource_problems(f"mqtt-estate:index:{component}", args, name)]
    assert found == []
    for variable, output in re.findall(r"\b(pki|broker)\.(\w+)\b", code):
        token = "mqtt-estate:index:" + {"pki": "Pki", "broker": "MosquittoBroker"}[variable]
        assert output in SCHEMA["resources"][token]["properties"], f"{variable}.{output}"


@pytest.mark.parametrize("mistake, expected", [
    ({"settings": {"listeners": [{"name": "mqtts", "port": "8883"}]}}, "integer expected"),
    ({"settings": {"listeners": [{"name": "mqtts", "port": 8883, "tls_version": "tlsv1.2"}]}}, "not an input"),
    ({"settings": {"listeners": [{"name": "mqtts"}]}}, "port: required input missing"),
    ({"users": [{"name": "scada", "passwordLogin": "no"}]}, "boolean expected"),
], ids=["port-as-text", "python-name-in-yaml", "port-missing", "boolean-as-text"])
def test_the_check_catches_what_a_user_gets_wrong(mistake, expected):
    """The checker itself: a mistake a TypeScript/YAML user makes (a Python field name, a quoted number) is found."""
    program = yaml.safe_load(code_block("yaml", "mqtt-estate:index:MosquittoBroker"))
    properties = program["resources"]["broker"]["properties"]
    for key, value in mistake.items():
        if key == "settings":
            properties["settings"] = {**properties["settings"], **value}
        else:
            properties[key] = value
    found = resource_problems("mqtt-estate:index:MosquittoBroker", properties, "broker")
    assert any(expected in line for line in found), found
