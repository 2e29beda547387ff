"""The statement words of a piece of SQL, read the way every common database could read it.

A rule that looks for ``DROP TABLE`` with a regex is stepped around with ``DROP/**/TABLE``,
``drop\\ttable``, ``TRUNCATE x`` or a comment in the right place. :func:`sql_words` instead lexes
the text and returns its *code words*: every word outside string literals, quoted names and
comments, in :func:`~daemon.normalize.normalize` form. A rule then asks whether a keyword such as
``drop`` is among them, so spacing, comments, case, quoting of names and the rest of the
statement do not matter.

Databases disagree on what is a comment or a string, and an agent can use the disagreement to
hide a statement from one reading while another runs it: ``'\\' ; DROP TABLE t; -- '`` is one
string to MySQL and a string, a ``DROP`` and a comment to PostgreSQL; ``--x`` starts a comment
in PostgreSQL but is ``- -x`` in MySQL; ``/*! DROP TABLE t */`` is code to MySQL; ``#`` is a
comment in MySQL and an operator in PostgreSQL; ``[a'b]`` is a name in SQL Server and SQLite.
So the text is lexed under each dialect's rules (:data:`DIALECTS`), and once more cut at every
``;`` (what a server does that splits a script naively before running it), and the words of
all those readings are united: a word any reading sees as code counts.

Lexing is done on the raw text: only ASCII characters are SQL syntax, so a fullwidth quote
cannot open a string here that the database would not see. Each word is normalized afterwards
and split again at anything that is not a letter, digit or underscore (``$``, a no-break space
that NFKC turns into a space), so ``ＤＲＯＰ`` and ``drop$x`` give ``drop``.

What it cannot see: a function with side effects called from a ``SELECT`` (``SELECT
lo_unlink(1)``). Keep executors of dynamic SQL (``execute``, ``exec``, ``prepare``, ``call``,
``do``) among the keywords, and give the server a read-only database role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from daemon.normalize import normalize

__all__ = ["DIALECTS", "MAX_SQL", "Dialect", "sql_words"]

#: Texts longer than this are not lexed: :func:`sql_words` returns ``None`` and the caller
#: treats the text as containing every keyword (a human looks at it).
MAX_SQL = 1 << 16


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one family of databases treats as a comment, a string or a quoted name."""

    name: str
    nested_comments: bool = False  # /* /* */ */ is one comment (PostgreSQL, SQL Server)
    dash_needs_space: bool = False  # "-- " must be followed by whitespace (MySQL)
    hash_comments: bool = False  # "# ..." to the end of the line (MySQL)
    executable_comments: bool = False  # /*! ... */ is code (MySQL, MariaDB)
    backslash_escapes: bool = False  # '\'' inside a string (MySQL default)
    double_quoted_strings: bool = False  # "..." is a string, not a name (MySQL default)
    backticks: bool = False  # `name` (MySQL, SQLite)
    brackets: bool = False  # [name] (SQL Server, SQLite)
    dollar_quotes: bool = False  # $tag$ ... $tag$ (PostgreSQL)
    e_strings: bool = False  # E'\'' (PostgreSQL)
    q_quotes: bool = False  # q'[ ... ]' (Oracle)


#: The readings every text is lexed under.
DIALECTS: tuple[Dialect, ...] = (
    Dialect("postgresql", nested_comments=True, dollar_quotes=True, e_strings=True),
    Dialect(
        "mysql",
        dash_needs_space=True,
        hash_comments=True,
        executable_comments=True,
        backslash_escapes=True,
        double_quoted_strings=True,
        backticks=True,
    ),
    Dialect(
        "mysql-ansi", dash_needs_space=True, hash_comments=True, executable_comments=True, backticks=True
    ),
    Dialect("sqlserver", nested_comments=True, brackets=True),
    Dialect("sqlite", backticks=True, brackets=True),
    Dialect("oracle", q_quotes=True),
)

# A word: letters, digits, underscore and any non-ASCII character, then also "$" (identifiers
# such as a$b in PostgreSQL and MySQL). Everything else in ASCII is punctuation.
_WORD = r"[0-9A-Za-z_\x80-\U0010ffff][0-9A-Za-z_$\x80-\U0010ffff]*"
_SPLIT = re.compile(r"[\W]+")


@cache
def _lexer(d: Dialect) -> re.Pattern[str]:
    """One alternation, tried at each position: the first alternative that matches wins."""
    quote = r"'(?:[^'\\]|\\.|'')*(?:'|\Z)" if d.backslash_escapes else r"'(?:[^']|'')*(?:'|\Z)"
    parts = []
    if d.executable_comments:
        parts.append(r"(?P<exec>/\*M?!\d*)")  # the marker goes; what follows is code
    parts.append(r"(?P<block>/\*)")
    parts.append(r"--(?=[\s]|\Z)[^\n]*" if d.dash_needs_space else r"--[^\n]*")
    if d.hash_comments:
        parts.append(r"\#[^\n]*")
    if d.e_strings:
        parts.append(r"[eE]'(?:[^'\\]|\\.|'')*(?:'|\Z)")
    if d.q_quotes:
        parts.append(
            r"[nN]?[qQ]'(?:\[.*?(?:\]'|\Z)|\{.*?(?:\}'|\Z)|\(.*?(?:\)'|\Z)|<.*?(?:>'|\Z)|(?P<qd>.).*?(?:(?P=qd)'|\Z))"
        )
    parts.append(quote)
    if d.double_quoted_strings:
        parts.append(r'"(?:[^"\\]|\\.|"")*(?:"|\Z)')
    else:
        parts.append(r'"(?:[^"]|"")*(?:"|\Z)')
    if d.backticks:
        parts.append(r"`(?:[^`]|``)*(?:`|\Z)")
    if d.brackets:
        parts.append(r"\[(?:[^\]]|\]\])*(?:\]|\Z)")
    if d.dollar_quotes:
        parts.append(
            r"\$(?P<tag>[A-Za-z_\x80-\U0010ffff][0-9A-Za-z_\x80-\U0010ffff]*|)\$(?:.*?\$(?P=tag)\$|.*\Z)"
        )
    parts.append(f"(?P<word>{_WORD})")
    return re.compile("|".join(parts), re.DOTALL)


_COMMENT_EDGE = re.compile(r"/\*|\*/")


def _block_end(text: str, start: int, nested: bool) -> int:
    """Where the block comment opened just before ``start`` ends (the end of text if never)."""
    if not nested:
        end = text.find("*/", start)
        return len(text) if end < 0 else end + 2
    depth = 1
    for m in _COMMENT_EDGE.finditer(text, start):
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return m.end()
    return len(text)


def _read(text: str, d: Dialect, words: set[str]) -> None:
    """Add the code words of ``text`` under dialect ``d`` to ``words`` (raw, not normalized)."""
    lexer = _lexer(d)
    pos, n = 0, len(text)
    search = lexer.search
    while pos < n:
        m = search(text, pos)
        if m is None:
            return
        if m.group("word") is not None:
            words.add(m.group("word"))
            pos = m.end()
        elif m.group("block") is not None:
            pos = _block_end(text, m.end(), d.nested_comments)
        else:  # a string, quoted name, line comment or executable-comment marker
            pos = max(m.end(), m.start() + 1)


def sql_words(text: str) -> frozenset[str] | None:
    """The normalized code words of ``text`` under every reading (see the module docstring).

    Returns:
        The words, or ``None`` if ``text`` is longer than :data:`MAX_SQL` (not lexed: treat it
        as containing every keyword).
    """
    if len(text) > MAX_SQL:
        return None
    raw: set[str] = set()
    pieces = text.split(";")
    for d in DIALECTS:
        _read(text, d, raw)
        if len(pieces) > 1:
            for piece in pieces:
                _read(piece, d, raw)
    out: set[str] = set()
    for word in raw:
        out.update(w for w in _SPLIT.split(normalize(word)) if w)
    return frozenset(out)
