"""The MCP Action Firewall's benchmark suite (issue 6): ``python -m bench`` (see ``bench/README.md``).

Every variant (the target alone, a trivial byte relay, the seed from PyPI, this project's shim with
its daemon) is measured run by run, interleaved, so that noise on a shared machine hits all alike.
"""

from pathlib import Path

#: The ``bench/`` folder, and the repository around it (whose ``shim`` and ``daemon`` are measured).
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
