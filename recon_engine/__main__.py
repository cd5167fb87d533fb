"""``python -m recon_engine``: the command line (see :mod:`recon_engine.cli`)."""

import sys

from recon_engine.cli import main

sys.exit(main())
