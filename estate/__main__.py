import sys

from estate.cli import main

sys.exit(main())
