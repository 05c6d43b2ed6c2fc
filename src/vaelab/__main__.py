"""``python -m vaelab`` is the ``vaelab`` command (torchrun's ``-m vaelab`` needs it)."""

import sys

from vaelab.cli import main

sys.exit(main())
