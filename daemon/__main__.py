"""``python -m daemon``: the same as the ``firewalld`` command (the shim starts it this way)."""

import sys

from daemon.cli import main

sys.exit(main())
