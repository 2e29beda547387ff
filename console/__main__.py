"""``python -m console``: the same as the ``firewall-console`` command."""

import sys

from console.cli import main

sys.exit(main())
