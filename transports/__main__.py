"""``python -m transports``: the same as the ``drbot`` command."""
import sys

from transports.cli import main

sys.exit(main())
