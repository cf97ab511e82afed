"""``python -m mfsg`` runs the command line."""

import sys

from mfsg.cli import main

sys.exit(main())
