"""The install guard: each command first checks that the packages it runs are this project's.

Our import packages have short, common names, and one of them is taken: python-daemon also
installs a top-level ``daemon``. pip installs both into one environment without a word, the last
one's ``daemon/__init__.py`` winning, so one of the two breaks in ways that have nothing to do
with the cause. Each of our packages sets ``MCP_ACTION_FIREWALL`` in its ``__init__``; a command
that finds a package without it (another project's, or ours with its ``__init__`` overwritten or
removed) refuses to run with one line that says so, and exit status :data:`EXIT_FOREIGN`.

The check is one attribute lookup on packages the command imports anyway, so it costs the shim's
start-up nothing measurable. ``firewalld`` and ``firewall-console`` start here rather than in
``daemon.cli``/``console.cli``: a foreign ``daemon`` without a ``cli`` module is then reported in
words, not as a ``ModuleNotFoundError`` traceback. Stdlib only, like the rest of the shim.
"""

from __future__ import annotations

import sys

#: Exit status of a command that refuses to run on a mixed-up install (``EX_CONFIG``).
EXIT_FOREIGN = 78


def _where(module: object) -> str:
    path = getattr(module, "__file__", None)
    if path:
        return str(path).removesuffix("__init__.py").rstrip("/\\") or str(path)
    paths = list(getattr(module, "__path__", []) or [])
    return str(paths[0]) if paths else "?"


def _owners(name: str) -> str:
    """The distributions that put files into top-level package ``name`` (only on the failure path:
    reading every installed distribution's metadata takes tens of milliseconds)."""
    try:
        from importlib.metadata import packages_distributions

        owners = sorted(set(packages_distributions().get(name, [])))
    except Exception:  # metadata of some other distribution is broken: say what we know
        return ""
    return f"; installed here by: {', '.join(owners)}" if owners else ""


def problem(*packages: str) -> str | None:
    """Why this install cannot run, or None: the first of ``packages`` that is not this project's."""
    for name in packages:
        try:
            module = __import__(name)
        except Exception as exc:  # another project's package may fail to import in any way
            return (
                f"the Python package {name!r} here is not this project's (importing it failed: "
                f"{type(exc).__name__}: {exc}){_owners(name)}. {_ADVICE}"
            )
        if getattr(module, "MCP_ACTION_FIREWALL", None) is None:
            return (
                f"the Python package {name!r} ({_where(module)}) is not this project's: another "
                f"distribution uses the same name in this environment{_owners(name)}. {_ADVICE}"
            )
    return None


_ADVICE = (
    "Install mcp-action-firewall as a tool of its own: `pipx install PATH-TO-CHECKOUT` "
    "(or `uv tool install PATH-TO-CHECKOUT`), see the README's Install section"
)


def check(prog: str, *packages: str) -> None:
    """Exit with :data:`EXIT_FOREIGN` and one line on stderr if :func:`problem` finds one."""
    found = problem(*packages)
    if found is not None:
        sys.stderr.write(f"{prog}: {found}\n")
        sys.stderr.flush()
        raise SystemExit(EXIT_FOREIGN)


def firewalld() -> None:
    """Entry point of ``firewalld``."""
    check("firewalld", "shim", "daemon")
    from daemon.cli import main

    sys.exit(main())


def firewall_console() -> None:
    """Entry point of ``firewall-console``."""
    check("firewall-console", "shim", "console", "daemon")
    from console.cli import main

    sys.exit(main())
