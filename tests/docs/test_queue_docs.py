"""docs/queue.md stays true to the code: commands, options, payload fields, settings.

The README links to it (tests/docs/test_links.py).
"""

from __future__ import annotations

import re

import pytest

from convdb.config import SETTINGS

from ..support import EXAMPLE, REPO, run_cli

PAGE = (REPO / "docs" / "queue.md").read_text(encoding="utf-8")
COMMANDS = sorted(
    set(re.findall(r"convdb (enqueue|queue-worker|queue (?:stats|retry-dead|purge))", PAGE))
)


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_exists(command):
    result = run_cli("convdb", *command.split(), "--help")
    assert result.returncode == 0, result.stderr


def test_every_documented_option_exists():
    documented = set(re.findall(r"`(--[a-z-]+)", PAGE))
    helps = "".join(run_cli("convdb", *c.split(), "--help", check=True).stdout for c in COMMANDS)
    assert documented and {o for o in documented if o not in helps} == set()


def test_every_payload_field_is_documented():
    assert len(COMMANDS) == 5
    for field in EXAMPLE:
        assert f"`{field}" in PAGE, field


def test_every_limit_setting_is_documented():
    limits = [s for s in SETTINGS if s.doc.startswith("queue:")]
    assert len(limits) == 4
    for setting in limits:
        row = PAGE[PAGE.index(f"| `{setting.variable}` | {setting.default}") :].split("\n")[0]
        low, high = (setting.parse(v) for v in row.split("|")[3].split()[0:3:2])
        with pytest.raises(ValueError, match=f"expected {low} to {high}"):
            setting.parse(str(high + 1))
