"""The policy search order, the user's policy file and the --name check, without processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon import userconfig as u
from daemon.config import load_config


def test_search_order(tmp_path: Path) -> None:
    """./firewall_config.json, then $XDG_CONFIG_HOME's, then ~/.config's, then the bundled one (None)."""
    home, xdg, cwd = tmp_path / "home", tmp_path / "xdg", tmp_path / "project"
    cwd.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}
    assert u.find_policy(str(cwd), env) is None
    in_home = home / ".config" / "mcp-action-firewall" / "firewall_config.json"
    u.write_starter(str(in_home), force=False)
    assert u.find_policy(str(cwd), env) == str(in_home)
    in_xdg = xdg / "mcp-action-firewall" / "firewall_config.json"
    u.write_starter(str(in_xdg), force=False)
    assert u.find_policy(str(cwd), env) == str(in_xdg)
    assert u.find_policy(str(cwd), {"HOME": str(home)}) == str(in_home)  # what a client's shim sees
    (cwd / "firewall_config.json").write_text("{}")
    assert u.find_policy(str(cwd), env) == str(cwd / "firewall_config.json")
    assert u.user_config_files({"HOME": str(home), "XDG_CONFIG_HOME": "relative"}) == [str(in_home)]


def test_starter_policy_is_the_bundled_one_with_notes() -> None:
    """Same rules as the bundled defaults; a description in every section."""
    starter = json.loads(u.starter_policy())
    bundled = json.loads(Path(u.BUNDLED).read_text())
    assert starter["global"]["rules"] == bundled["global"]["rules"]
    assert set(starter["servers"]) == set(bundled["servers"])
    assert all("description" in s for s in [starter["global"], *starter["servers"].values()])


def test_write_starter_refuses_to_overwrite_and_never_follows_a_symlink(tmp_path: Path) -> None:
    """Without force an existing file stays; with force a symlink planted there is not written through."""
    path = tmp_path / "conf" / "firewall_config.json"
    u.write_starter(str(path), force=False)
    load_config(path)
    path.write_text("mine")
    with pytest.raises(FileExistsError):
        u.write_starter(str(path), force=False)
    assert path.read_text() == "mine"
    victim = tmp_path / "victim"
    victim.write_text("keep")
    path.unlink()
    path.symlink_to(victim)
    with pytest.raises(OSError):
        u.write_starter(str(path), force=True)
    assert victim.read_text() == "keep"


@pytest.mark.parametrize(
    ("name", "sections", "expected"),
    [
        ("stripe", ["stripe"], None),
        (None, ["stripe"], None),
        ("strpe", None, None),  # unreadable policy: the daemon reports that instead
        ("strpe", ["stripe", "database"], "did you mean 'stripe'?"),
        ("zzz", ["stripe"], "(its sections: 'stripe'), so only the global rules apply"),
        ("x", [], "(its sections: none)"),
    ],
)
def test_unknown_name(name: str | None, sections: list[str] | None, expected: str | None) -> None:
    """A --name that matches no section is named with the sections there are, and a close match."""
    warning = u.unknown_name(name, sections, "P")
    if expected is None:
        assert warning is None
    else:
        assert warning is not None and expected in warning and warning.startswith(f"--name {name!r}")
