"""The components as one Pulumi package, `mqtt-estate`, for programs in any language.

Pulumi's Python component-provider host infers the package schema from the components' type annotations and
docstrings (pulumi/provider/experimental/analyzer.py) and serves Construct and GetSchema over gRPC
(pulumi/provider/server.py). provider/__main__.py runs `serve()`; `python -m estate schema --provider` prints the
schema kept in schema/provider.schema.json.

EstateComponentProvider is the SDK's ComponentProvider with two repairs (pulumi 3.272 and pulumi/pulumi 1b59498,
sdk/python/lib/pulumi/provider/experimental/component.py, identical):

- integers: every number crosses gRPC as a double (google.protobuf Struct), and map_input_properties converts an
  integer property with int() (component.py:276-284) but then stores the unconverted float over it (line 287:
  the INTEGER branch has no `continue`). A port of 1883 would reach mosquitto.conf as `listener 1883.0`, and
  NfsStorage's range(count) would fail. Here every integer property, in lists, maps and nested objects too,
  becomes an int, and a fractional value is refused with the SDK's own InputPropertyError, which names the
  property (tests/test_provider_schema.py).
- descriptions: the analyzer copies docstrings verbatim, continuation-line indentation included; they are
  dedented (inspect.cleandoc) so the generated SDKs' doc comments read cleanly.

And one for the user: a component refuses invalid args with one line per problem (components/arguments.py), which
the SDK would wrap into ComponentInitError and send with the provider's Python traceback appended (pulumi 3.272
pulumi/provider/server.py:120-149, Construct); it is sent as the SDK's InputPropertiesError instead, which carries
the lines alone (status INVALID_ARGUMENT, server.py:128-131).
"""

import inspect
import json
import sys
from typing import Any

from pulumi.errors import InputPropertiesError, InputPropertyError
from pulumi.provider import main
from pulumi.provider.experimental.analyzer import PropertyDefinition, PropertyType
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.server import ComponentInitError

from .. import __version__
from .arguments import ComponentArgumentsError
from .broker import MosquittoBroker
from .cloud_bridge import CloudBridge
from .monitoring import MonitoringStack
from .backup_bucket import BackupBucket
from .haproxy import HaProxyFrontend
from .nfs import NfsStorage
from .pki import Pki

PACKAGE = "mqtt-estate"
"""The package name: type tokens are `mqtt-estate:index:<Component>`, as the components register themselves."""
COMPONENTS = [MosquittoBroker, HaProxyFrontend, NfsStorage, Pki, CloudBridge, MonitoringStack, BackupBucket]


class EstateComponentProvider(ComponentProvider):
    def __init__(self) -> None:
        super().__init__(COMPONENTS, PACKAGE, version=__version__)
        self.schema = json.dumps(_secrets_marked(_dedented(json.loads(self.schema))))

    def construct(self, name, resource_type, inputs, options=None):
        try:
            return super().construct(name, resource_type, inputs, options)
        except ComponentInitError as error:
            if isinstance(error.inner, ComponentArgumentsError):
                raise InputPropertiesError(str(error.inner)) from error.inner
            raise

    def map_input_properties(self, inputs, properties: dict[str, PropertyDefinition], mapping: dict[str, str],
                             component_name: str, property_path: str):
        # the SDK recurses into nested objects through this method, so their integers are handled here too
        mapped = super().map_input_properties(inputs, properties, mapping, component_name, property_path)
        for schema_name, prop in properties.items():
            if mapping[schema_name] in mapped:
                path = f"{property_path}.{schema_name}" if property_path else schema_name
                mapped[mapping[schema_name]] = _integers(mapped[mapping[schema_name]], prop, path, component_name)
        return mapped


def _integers(value: Any, prop: PropertyDefinition, path: str, component: str) -> Any:
    """`value` with each float an integer property holds (itself, or in a list or map of them) made an int."""
    if prop.type == PropertyType.INTEGER and isinstance(value, float):
        if not value.is_integer():
            raise InputPropertyError(path, f"{value!r} is not a whole number: '{path}' on '{component}' is an "
                                           "integer")
        return int(value)
    if prop.items is not None and not prop.items.ref and isinstance(value, list):
        return [_integers(item, prop.items, f"{path}[{i}]", component) for i, item in enumerate(value)]
    if prop.additional_properties is not None and not prop.additional_properties.ref and isinstance(value, dict):
        return {key: _integers(item, prop.additional_properties, f"{path}.{key}", component)
                for key, item in value.items()}
    return value


def _dedented(node: Any) -> Any:
    """The schema with every description dedented (a property named "description" is a dict, not touched)."""
    if isinstance(node, dict):
        return {key: inspect.cleandoc(value) if key == "description" and isinstance(value, str) else _dedented(value)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_dedented(item) for item in node]
    return node


SECRETS = {
    "resources": {
        "MosquittoBroker": {"inputProperties": ["serverKeyPem"], "properties": ["credentials"]},
        "HaProxyFrontend": {"properties": ["statsPassword"]},
        "Pki": {"inputProperties": ["existingCaKeyPem"], "properties": ["serverKeyPem", "clientKeyPems"]},
    },
    "types": {"BrokerUser": {"properties": ["password"]}, "ClientCertificate": {"properties": ["keyPem"]},
              "AzureIotArgs": {"properties": ["deviceKey"]}, "MqttRemoteArgs": {"properties": ["password"]}},
}
"""Properties that hold passwords or private keys. The analyzer has no marker for them, so they are marked here:
`secret: true` (pulumi/pulumi 1b59498 pkg/codegen/schema/schema.go:1804-1805) makes the generated SDKs wrap such
an input in a secret before it reaches the engine (e.g. TypeScript: pkg/codegen/nodejs/gen.go:832-833) and list
such an output as an additional secret output (gen.go:931-936), so a password written as a literal in a
TypeScript or YAML program is never stored in plain text."""


def _secrets_marked(schema: dict) -> dict:
    for section, owners in SECRETS.items():
        for owner, kinds in owners.items():
            for kind, names in kinds.items():
                for name in names:
                    schema[section][f"{PACKAGE}:index:{owner}"][kind][name]["secret"] = True
    return schema


def schema_text() -> str:
    """The provider's schema as kept in schema/provider.schema.json: sorted keys, indent 2, a final newline."""
    return json.dumps(json.loads(EstateComponentProvider().schema), indent=2, sort_keys=True) + "\n"


def serve() -> None:
    """Serve the provider over gRPC: what pulumi.provider.experimental.component_provider_host does (host.py:61,
    `main(ComponentProvider(components, name, namespace, version), args)`), with EstateComponentProvider.
    pulumi.provider.server.main takes the engine address as the first argument of sys.argv (server.py:528-533),
    listens on 127.0.0.1 at a free port and prints the port on stdout (server.py:539-542)."""
    main(EstateComponentProvider(), sys.argv[1:])
