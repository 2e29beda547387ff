"""The console's pure parts: wire parsing, what is shown for hostile text, countdowns, filters."""

from __future__ import annotations

import json
import sys
import unicodedata

import pytest

from console.desktop import notification_command
from console.history import event_label
from console.model import (
    AuditEntry,
    HistoryQuery,
    action_from_wire,
    countdown,
    pretty_arguments,
    session_from_wire,
    state_from_wire,
    visible,
)
from console.pending import arguments_content


def test_actions_are_parsed_newest_first_and_tolerate_odd_fields() -> None:
    """Missing or mistyped fields become empty values, never an exception."""
    state = state_from_wire(
        [{"session_id": "S-1", "connected": True, "allowed": True, "target": "not-a-list"}],
        [
            {"action_id": "A-old", "created": 1.0, "tool": "a"},
            {"action_id": "A-new", "created": 2.0, "tool": 5, "attempts_left": "3", "target": ["x", "y"]},
        ],
    )
    assert [a.action_id for a in state.actions] == ["A-new", "A-old"]
    new = state.actions[0]
    assert (new.tool, new.attempts_left, new.target, new.arguments_json) == ("", 0, ("x", "y"), "{}")
    (session,) = state.sessions
    assert session.connected and session.allowed == 0 and session.target == ()
    assert state.action("A-old") is state.actions[1]
    assert state.action("A-none") is None


def test_every_field_the_daemon_sends_is_read() -> None:
    """A full entry from ``pending_views`` and ``Session.view`` round-trips into the dataclasses."""
    action = action_from_wire(
        {
            "action_id": "A-1",
            "session_id": "S-1",
            "server": "fx",
            "client": "c 1",
            "target": ["t"],
            "cwd": "/w",
            "tool": "delete_user",
            "arguments_json": '{"id": 1}',
            "rule": "r",
            "reason": "why",
            "created": 1.5,
            "deadline": 2.5,
            "attempts_left": 3,
            "code": "123456",
        }
    )
    assert action.code == "123456" and action.deadline == 2.5 and action.target == ("t",)
    session = session_from_wire({"session_id": "S-1", "pid": 7, "paused": 2, "denied": 1, "connected": False})
    assert (session.pid, session.paused, session.denied, session.connected) == (7, 2, 1, False)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("delete_user", "delete_user"),
        ("naïve café 😀", "naïve café 😀"),
        ("safe\u202eresu_eteled", "safe\\u202eresu_eteled"),  # right-to-left override
        ("a\u200bb", "a\\u200bb"),  # zero-width space
        ("\x1b[31mred", "\\u001b[31mred"),  # terminal escape
        ("x\u00a0y", "x\\u00a0y"),  # no-break space posing as a space
        ("tag\U000e0041", "tag\\U000e0041"),  # invisible tag character
    ],
)
def test_visible_spells_out_what_would_hide(raw: str, shown: str) -> None:
    """Invisible and look-alike characters are shown as escapes; ordinary text is untouched."""
    assert visible(raw) == shown


def test_pretty_arguments_keep_structure_and_escape_hidden_characters() -> None:
    """Indented JSON, non-ASCII kept readable, line separators and bidi controls escaped."""
    text = pretty_arguments(json.dumps({"note": "naïve \u2028 \u202e", "n": 10**30}))
    assert text == '{\n  "note": "naïve \\u2028 \\u202e",\n  "n": 1000000000000000000000000000000\n}'
    assert pretty_arguments("not json\u202e") == "not json\\u202e"


def test_huge_arguments_are_cut_with_a_warning() -> None:
    """Past the limit the display stops, and says how much is not shown and where to see it."""
    content = arguments_content(json.dumps({"blob": "x" * 5000}), "A-1", limit=1000)
    assert content.plain.startswith('{\n  "blob": "xxx')
    assert "4,016 more characters are not shown" in content.plain  # 5,016 in all, 1,000 shown
    assert not any("error" in str(span.style) for span in content.spans)  # a cut string is no error
    assert "firewall-console show A-1" in content.plain


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(299.2, "5:00"), (272.0, "4:32"), (0.2, "0:01"), (0.0, "expired"), (-3, "expired"), (3725, "1:02:05")],
)
def test_countdown(seconds: float, shown: str) -> None:
    """Whole seconds rounded up, so 0:00 is never shown for a code that still works."""
    assert countdown(seconds) == shown


def _entry(**fields: object) -> AuditEntry:
    base: dict[str, object] = dict.fromkeys(
        ("event", "session_id", "server", "tool", "action_id", "decision", "rule", "detail"), ""
    )
    base.update(fields)
    return AuditEntry(row_id=1, ts=0.0, **base)  # type: ignore[arg-type]


def test_history_query_parses_exact_filters_and_words() -> None:
    """key:value pairs go to the daemon; other words match anywhere, case-insensitively."""
    query = HistoryQuery.parse("tool:delete_user  Server:github session:S-1 Denied  console")
    assert query == HistoryQuery("S-1", "github", "delete_user", ("denied", "console"))
    hit = _entry(tool="delete_user", server="github", session_id="S-1", event="denied", detail="console")
    assert query.matches(hit)
    assert not query.matches(_entry(tool="delete_user", server="github", session_id="S-1", event="paused"))
    assert not query.matches(_entry(tool="other", server="github", session_id="S-1", event="denied console"))
    assert HistoryQuery.parse("tool: foo:bar") == HistoryQuery(words=("tool:", "foo:bar"))


def test_history_event_labels() -> None:
    """Audit events read as what happened to the call."""
    assert event_label(_entry(event="decision", decision="allow"))[0] == "allowed"
    assert event_label(_entry(event="decision", decision="deny")) == ("blocked", "bold")
    assert event_label(_entry(event="confirm_ok"))[0] == "approved"
    assert event_label(_entry(event="outcome", decision="error"))[0] == "ran, failed"
    assert event_label(_entry(event="outcome", decision="not_run"))[0] == "did not run"
    assert event_label(_entry(event="outcome", decision="unknown"))[0] == "outcome unknown"
    assert event_label(_entry(event="outcome", decision="odd\x1b[2J"))[0] == "outcome odd\\u001b[2J"
    assert event_label(_entry(event="something_new\u202e"))[0] == "something_new\\u202e"


def test_desktop_notification_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """notify-send on Linux, osascript (with quoting) on macOS, nothing where neither exists."""
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert notification_command("T", "B", "linux") == [
        "/usr/bin/notify-send",
        "--app-name=firewall-console",
        "--",
        "T",
        "B",
    ]
    mac = notification_command("T", 'say "hi" \\', "darwin")
    assert mac == ["/usr/bin/osascript", "-e", 'display notification "say \\"hi\\" \\\\" with title "T"']
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert notification_command("T", "B", "linux") is None
    assert notification_command("T", "B", "darwin") is None


#: Strings an agent or a server may put in a tool name, an argument or a client name.
HOSTILE = [
    ("\x1b[1A\x1b[2K", "\\u001b[1A\\u001b[2K"),  # cursor up, erase line
    ("\x1b]8;;https://evil\x07click\x1b]8;;\x07", "\\u001b]8;;https://evil\\u0007click\\u001b]8;;\\u0007"),
    ("\x9b2J", "\\u009b2J"),  # C1 CSI: a one-character escape
    ("\x85next", "\\u0085next"),  # C1 next line
    ("a\rb\nc\td\x08\x00", "a\\u000db\\u000ac\\u0009d\\u0008\\u0000"),
    ("del\x7f", "del\\u007f"),
    ("\u202eevil\u202c \u2066iso\u2069 \u200f\u061c", "\\u202eevil\\u202c \\u2066iso\\u2069 \\u200f\\u061c"),
    ("zero\u200b\u200c\u200d\u2060\ufeff\u00ad", "zero\\u200b\\u200c\\u200d\\u2060\\ufeff\\u00ad"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("lone\ud800\udfff", "lone\\ud800\\udfff"),
    ("fill\u3164\u115f\u2800", "fill\\u3164\\u115f\\u2800"),
    ("vs\ufe0f\U000e0100", "vs\\ufe0f\\U000e0100"),
    ("priv\ue000\U0010fffd", "priv\\ue000\\U0010fffd"),
    ("wide\u3000space\u2009", "wide\\u3000space\\u2009"),
]


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_visible_escapes_hostile_strings(raw: str, shown: str) -> None:
    """Controls, escapes, bidi, invisible and format characters, separators, lone surrogates: spelt out."""
    assert visible(raw) == shown
    assert shown.isascii() and shown.isprintable()
    assert visible(shown) == shown  # escaping twice changes nothing


def test_visible_leaves_no_hidden_character_anywhere_in_unicode() -> None:
    """Over every code point: what comes out draws itself (no control, format, separator or surrogate)."""
    everything = "".join(map(chr, range(0x110000)))
    shown = visible(everything)
    left = {unicodedata.category(c) for c in shown}
    assert not left & {"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"}
    assert all(c == " " for c in shown if unicodedata.category(c) == "Zs")
    assert "\x1b" not in shown and "\x9b" not in shown


def test_every_console_output_path_escapes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text commands, desktop notifications: a terminal escape reaches none of them raw."""
    from console import desktop
    from console.cli import emit

    emit("tool\x1b[2A", "x\ny")
    emit("err\x9b", file=sys.stderr)
    out, err = capsys.readouterr()
    assert out == "tool\\u001b[2A\nx\\u000ay\n" and err == "err\\u009b\n"
    seen: list[list[str]] = []
    monkeypatch.setattr(desktop, "notification_command", lambda t, b: seen.append([t, b]) or None)
    desktop.desktop_notify("t\x1b", "b\u202e")
    assert seen == [["t\\u001b", "b\\u202e"]]
