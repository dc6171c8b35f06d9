"""The mqtt-estate component provider: MosquittoBroker, HaProxyFrontend, NfsStorage and Pki for every Pulumi
language, served by Pulumi's Python component-provider host (mqtt_estate/components/provider.py).

The Pulumi CLI runs `python <this folder> <engine address> ...` (PulumiPlugin.yaml beside this file says where
that is decided). The package is not installed into the plugin's virtualenv, only its requirements: it is imported
from the clone this folder sits in, so the repository root goes first on sys.path.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mqtt_estate.components.provider import serve  # noqa: E402 (needs the path above)

if __name__ == "__main__":
    serve()
