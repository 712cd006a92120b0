"""The README's Queue section stays true to the code: commands and payload fields."""

from __future__ import annotations

import re

import pytest

from ..support import EXAMPLE, REPO, run_cli

README = (REPO / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## Queue") :]
SECTION = SECTION[: SECTION.index("\n## ", 5)] if "\n## " in SECTION[5:] else SECTION
COMMANDS = sorted(
    set(re.findall(r"convdb (enqueue|queue-worker|queue (?:stats|retry-dead|purge))", SECTION))
)


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_exists(command):
    result = run_cli("convdb", *command.split(), "--help")
    assert result.returncode == 0, result.stderr


def test_every_documented_option_exists():
    documented = set(re.findall(r"`(--[a-z-]+)", SECTION))
    helps = "".join(run_cli("convdb", *c.split(), "--help", check=True).stdout for c in COMMANDS)
    assert documented and {o for o in documented if o not in helps} == set()


def test_every_payload_field_is_documented():
    assert len(COMMANDS) == 5
    for field in EXAMPLE:
        assert f"`{field}" in SECTION, field
