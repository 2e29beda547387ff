"""The built-in rule no policy can switch off: tool calls keep out of the firewall's own files.

An allowed tool that reads files (``read_file``, ``list_directory``, ``read_media_file``...) must
not read or write the firewall's state, its configuration, its socket directory, its service
files, its installed code, or the memory of the daemon and the consoles through ``/proc``. Codes
are not on disk any more (see :mod:`daemon.codes`), so reading the state no longer gives a code;
this rule is the second wall, and it also keeps an agent from rewriting the policy or the code
that enforces it.

A call is denied when any string in its arguments, at any depth, names a path inside a protected
place. What counts as naming a path: the whole string (up to :data:`_WHOLE` characters) when it
looks like one (it has a ``/``, or starts with ``~`` or ``.``, or is a ``file:`` URI), and every
word of a shorter string (up to :data:`_WORDS`) that does, split the way a shell would split a
command line. Each is resolved as a server might resolve it: ``~`` and ``$HOME`` expanded,
relative paths against the server's working directory and against every directory the server
was given on its command line (a filesystem server's roots), ``..`` folded, symlinks followed,
``/proc/PID/root`` and ``/proc/PID/cwd`` seen through. Both the lexical and the resolved path are
checked, so neither ``a/../b`` nor a symlink gets around it.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from daemon.userconfig import CONFIG_NAME

#: Different path-like strings checked in one call, at most. Each costs some microseconds of the
#: daemon's one thread (about 10 µs, more when it is relative to several directories), so the bound
#: keeps a huge call from holding every other session's decisions for seconds; a call naming more
#: is denied (no honest call names 20,000 different files; big file contents are not split).
MAX_PATHS = 20_000
#: Whole strings longer than this are not paths (PATH_MAX is 4096 on Linux).
_WHOLE = 4096
#: Strings longer than this are not split into words (file contents, not command lines).
_WORDS = 64 * 1024
#: Where a shell would split a command line, and what may stick to a path in one.
_SPLIT = re.compile(r"""[\s'"`;|&<>(){}\[\],=]+""")
_PROC = re.compile(r"^/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/(root|cwd)(/.*)?$")
_PROC_SELF = re.compile(r"^/proc/(?:self|thread-self)(?:/|$)")
_FOLD = sys.platform == "darwin"  # APFS and HFS+ compare names case-insensitively by default


@dataclass(frozen=True, slots=True)
class Hit:
    """A path in a call's arguments that lies inside a protected place."""

    where: str
    """Where in the arguments, as a JSON path (``$.path``, ``$.paths[2]``)."""
    named: str
    """The text the argument held (shortened)."""
    place: str
    """Which protected place, in words (empty: the call names more paths than are checked)."""

    def reason(self) -> str:
        """The sentence for the agent and the audit log."""
        if not self.place:
            return (
                f"The call's arguments name {self.named} (the last at {self.where}): more than the "
                "firewall's built-in self-protection checks in one call, so it cannot vouch that none "
                "reaches the firewall's own files. Split the call into smaller ones."
            )
        return (
            f"The argument at {self.where} names {self.named!r}, which is inside the firewall's own "
            f"{self.place}. The firewall's built-in self-protection denies every tool call that reaches "
            "its state, configuration, socket, service files, code or memory; no policy can allow it."
        )


class SelfProtection:
    """The protected places of one daemon, and the check of a call's arguments against them."""

    def __init__(self, places: Iterable[tuple[str, str]], home: str, max_paths: int = MAX_PATHS) -> None:
        """``places``: ``(path, description)`` pairs, directories or files; ``max_paths``: how many
        different path-like strings one call may hold (more is denied, see :data:`MAX_PATHS`)."""
        self._home = home
        self.max_paths = max_paths
        self._roots: list[tuple[str, str]] = []
        for path, label in places:
            for form in {os.path.normpath(os.path.abspath(path)), os.path.realpath(path)}:
                self._roots.append((_fold(form), label))
        # Places that come and go (the consoles' /proc entries), each with how many hold it.
        self._extra: dict[str, tuple[str, int]] = {}

    def add(self, path: str, label: str) -> None:
        """Protect one more place, until as many :meth:`remove` calls as :meth:`add` calls."""
        key = _fold(path)
        self._extra[key] = (label, self._extra.get(key, (label, 0))[1] + 1)

    def remove(self, path: str) -> None:
        """Undo one :meth:`add` of a place."""
        key = _fold(path)
        label, count = self._extra.get(key, ("", 0))
        if count <= 1:
            self._extra.pop(key, None)
        else:
            self._extra[key] = (label, count - 1)

    def covers(self, directory: str) -> bool:
        """Whether ``directory`` is inside a protected place (lexically or really): a server
        working there reaches protected files with any name at all."""
        roots = self._roots + [(path, label) for path, (label, _) in list(self._extra.items())]
        return any(_inside(path, roots) for path in self._resolve(directory, [directory], _Walk()))

    def check(
        self, arguments: object, cwd: str, bases: Iterable[str] = (), files: Iterable[str] = ()
    ) -> Hit | None:
        """The first string in ``arguments`` that names a protected place, or None.

        Args:
            arguments: The call's arguments (any JSON value).
            cwd: The server's working directory.
            bases: Further directories relative paths may be taken against (the server's roots).
            files: Further protected files for this call (its session's policy file).
        """
        # A copy first: the event loop may add or remove a place while a worker thread checks.
        roots = self._roots + [(path, label) for path, (label, _) in list(self._extra.items())]
        for f in files:
            roots += [
                (_fold(os.path.realpath(f)), "policy file"),
                (_fold(os.path.normpath(f)), "policy file"),
            ]
        dirs = [cwd, *bases]
        walk = _Walk()
        # A server working inside a protected place reaches it with any name at all.
        anything = any(_inside(path, roots) for path in self._resolve(cwd, dirs, walk)) if cwd else False
        seen: set[str] = set()
        for where, text in _strings(arguments):
            for candidate in _candidates(text, anything):
                if candidate in seen:
                    continue
                seen.add(candidate)
                if len(seen) > self.max_paths:
                    return Hit(_json_path(where), f"more than {self.max_paths} different paths", "")
                for path in self._resolve(candidate, dirs, walk):
                    label = _inside(path, roots) or _policy_named(path)
                    if label:
                        shown = text if len(text) <= 120 else text[:117] + "..."
                        return Hit(_json_path(where), shown, label)
        return None

    def _resolve(self, candidate: str, dirs: list[str], walk: _Walk) -> Iterator[str]:
        """The lexical and the real forms of a path, against each directory if it is relative."""
        path = candidate
        if path.startswith("file:"):
            path = unquote(path[5:])
            if path.startswith("//"):  # file://host/path: the host is not part of the path
                path = "/" + path[2:].partition("/")[2]
        if path.startswith("~"):
            head, sep, rest = path.partition("/")
            path = (self._home if head == "~" else os.path.expanduser(head)) + sep + rest
        for var in ("${HOME}", "$HOME"):
            if path.startswith(var):
                path = self._home + path[len(var) :]
        starts = [path] if os.path.isabs(path) else [os.path.join(d, path) for d in dirs if d]
        for start in starts:
            lexical = os.path.normpath(start)
            proc = _PROC.match(lexical)
            if proc is not None:  # /proc/PID/root/x is /x; /proc/PID/cwd/x is the server's ./x
                rest = (proc[2] or "/").lstrip("/")
                start = os.path.join("/" if proc[1] == "root" else dirs[0], rest)
                lexical = os.path.normpath(start)
            yield _fold(lexical)
            if not _PROC_SELF.match(lexical):  # /proc/self is the server's, not the daemon's
                # The real path of what was written, not of its lexical form: in ``link/../x`` the
                # ``..`` is taken from where the link points, as the kernel does.
                real = walk.real(start)
                if real is not None:
                    yield _fold(real)


class _Walk:
    """Symlink resolution as the kernel does it, for the paths of one call, with the ``lstat`` of
    each prefix made once, and no ``lstat`` below a name that does not exist (nothing there can be
    a link). So a call with a million path-like strings costs about one system call per new name,
    not one per component of every string."""

    _MAX_LINKS = 40  # as Linux's MAXSYMLINKS

    def __init__(self) -> None:
        self._links: dict[str, str | None] = {}  # path -> link target, or None if not a link
        self._missing: set[str] = set()

    def real(self, path: str) -> str | None:
        """``os.path.realpath(path)`` (non-strict), or None for a path that cannot name a file."""
        if "\0" in path:
            return None
        pending = [part for part in path.split("/") if part and part != "."]
        pending.reverse()
        resolved = "/"
        links = 0
        while pending:
            name = pending.pop()
            if name == "..":
                resolved = os.path.dirname(resolved)
                continue
            here = os.path.join(resolved, name)
            if resolved in self._missing or here in self._missing:
                self._missing.add(here)
                resolved = here
                continue
            target = self._link(here)
            if target is None:
                resolved = here
                continue
            links += 1
            if links > self._MAX_LINKS:
                return None  # a loop: the server's open would fail with ELOOP
            if target.startswith("/"):
                resolved = "/"
            more = [part for part in target.split("/") if part and part != "."]
            pending.extend(reversed(more))
        return resolved

    def _link(self, path: str) -> str | None:
        if path in self._links:
            return self._links[path]
        target: str | None = None
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                target = os.readlink(path)
        except FileNotFoundError:
            self._missing.add(path)
        except (OSError, ValueError):
            pass  # not a directory, too long, no permission: nothing to follow
        self._links[path] = target
        return target


def _inside(path: str, roots: list[tuple[str, str]]) -> str:
    """The label of the protected place ``path`` is in (or is), else ``""``."""
    for root, label in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return label
    return ""


def _fold(path: str) -> str:
    return path.casefold() if _FOLD else path


def _policy_named(path: str) -> str:
    """A file named as the policy a shim looks for in its server's working directory, wherever it
    is: one written there would be the policy of the next chat started in that directory."""
    return "policy file name" if os.path.basename(path) == _POLICY_NAME else ""


_POLICY_NAME = CONFIG_NAME.casefold() if _FOLD else CONFIG_NAME


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text
        or text.startswith(("~", ".", "$HOME", "${HOME}"))
        or text.startswith("file:")
        or text.casefold().endswith(CONFIG_NAME)  # a bare ``firewall_config.json`` is relative
    )


def _candidates(text: str, anything: bool = False) -> Iterator[str]:
    """The paths a string may name: itself, and the words of a command line (``anything``: every
    short string, not only those that look like paths)."""
    stripped = text.strip()
    if not stripped or "\0" in stripped:
        return
    if len(stripped) <= _WHOLE and (anything or _looks_like_path(stripped)):
        yield stripped
    if len(stripped) <= _WORDS and _SPLIT.search(stripped):
        for word in _SPLIT.split(stripped):
            if word and word != stripped and (anything or _looks_like_path(word)):
                yield word


#: Where a value sits in the arguments: its parent's place and its key or index (built as the
#: walk goes, and spelt as a JSON path only for the one string that is reported).
_Where = tuple[object, object] | None


def _strings(value: object) -> Iterator[tuple[_Where, str]]:
    """Every string in a JSON value with where it is; iterative, so depth cannot overflow."""
    stack: list[tuple[_Where, object]] = [(None, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            yield where, node
        elif isinstance(node, dict):
            stack.extend(((where, k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((where, i), v) for i, v in enumerate(node))


def _json_path(where: _Where) -> str:
    parts: list[str] = []
    while where is not None:
        where, key = where  # type: ignore[assignment]
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif isinstance(key, str) and key.isidentifier():
            parts.append(f".{key}")
        else:
            parts.append(f"[{str(key)!r}]")
    return "$" + "".join(reversed(parts))


def default_places(state_dir: str, socket_path: str, config_dir: str, home: str) -> list[tuple[str, str]]:
    """The places every daemon protects: its state, socket, configuration (the user's policy file
    wherever the shim looks for it), service files, code and memory."""
    import daemon
    from daemon.userconfig import user_config_files

    units = os.path.join(home, ".config", "systemd", "user")
    packages = os.path.dirname(os.path.dirname(os.path.abspath(daemon.__file__ or "")))
    return [
        (state_dir, "state directory"),
        (os.path.dirname(socket_path), "socket directory"),
        (config_dir, "configuration directory"),
        *((os.path.dirname(f), "configuration directory") for f in user_config_files()),
        (os.path.join(units, "mcp-action-firewall.socket"), "service files"),
        (os.path.join(units, "mcp-action-firewall.service"), "service files"),
        (
            os.path.join(home, "Library", "LaunchAgents", "io.github.mcp-action-firewall.firewalld.plist"),
            "service files",
        ),
        (f"/proc/{os.getpid()}", "daemon process (its memory)"),
        *((os.path.join(packages, name), "installed code") for name in ("daemon", "shim", "console")),
    ]
