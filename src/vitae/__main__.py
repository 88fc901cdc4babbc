"""``python -m vitae`` is the ``vitae`` command."""

import sys

from vitae.cli import main

sys.exit(main())
