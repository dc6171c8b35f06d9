"""`python -m mqtt_estate`: the offline engine's CLI, the same as the `mqtt-estate` console script."""

import sys

from mqtt_estate.estate.cli import main

sys.exit(main())
