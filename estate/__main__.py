"""`python -m estate` in a source checkout, `python -m mqtt_estate.estate` or `mqtt-estate` once installed."""

import sys

from mqtt_estate.estate.cli import main

# `python -m estate` in a checkout imported this folder as a top-level package `estate` first; the engine runs as
# mqtt_estate.estate, so let the name go: a program run with --program may have an `estate` module of its own.
if __package__ == "estate":
    sys.modules.pop("estate", None)

sys.exit(main())
