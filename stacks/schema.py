"""JSON Schema of a stack file, so editors can complete and check Pulumi.<stack>.yaml."""

from __future__ import annotations

from .errors import PROJECT
from .model import BRIDGE_KEY_PREFIX, BRIDGE_PASSWORD_PREFIX, CA_SECRET_KEYS, SECRET_KEY_PREFIX, Estate

SECRET_VALUE = {"anyOf": [{"type": "string"}, {"type": "object", "required": ["secure"]}]}


def stack_file_schema() -> dict:
    model = Estate.model_json_schema(by_alias=True)
    defs = model.pop("$defs", {})
    properties = {f"{PROJECT}:{key}": value for key, value in model["properties"].items()}
    for key in CA_SECRET_KEYS:
        properties[f"{PROJECT}:{key}"] = {"description": "secret (pulumi config set --secret)",
                                          "anyOf": [{"type": "string"}, {"type": "object", "required": ["secure"]}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mqtt-estate stack file",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": properties,
                "patternProperties": {
                    f"^{PROJECT}:{SECRET_KEY_PREFIX}": {"description": "a user's password (secret)", **SECRET_VALUE},
                    f"^{PROJECT}:{BRIDGE_PASSWORD_PREFIX}": {"description": "an mqtt bridge's remote password (secret)",
                                                             **SECRET_VALUE},
                    f"^{PROJECT}:{BRIDGE_KEY_PREFIX}": {"description": "an Azure IoT Hub device key, base64 (secret)",
                                                        **SECRET_VALUE},
                    f"^(?!{PROJECT}:)[^:]+:": {},
                },
                "additionalProperties": False,
            },
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
            "encryptionsalt": {"type": "string"},
        },
        "$defs": defs,
    }
