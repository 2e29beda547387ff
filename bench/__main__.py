"""``python -m bench``: run the benchmark suite."""

import sys

from bench.cli import main

sys.exit(main())
