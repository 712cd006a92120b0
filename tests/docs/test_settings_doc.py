"""Every setting convdb checks is documented: in .env.example and in docs/operations.md."""

from __future__ import annotations

import re

import pytest

from convdb.config import SETTINGS

from ..support import REPO


@pytest.mark.parametrize("page", [".env.example", "docs/operations.md"])
def test_every_setting_is_documented(page):
    text = (REPO / page).read_text(encoding="utf-8")
    missing = [
        s.variable for s in SETTINGS if not re.search(rf"(?<![A-Z_]){s.variable}(?![A-Z_])", text)
    ]
    assert missing == []


def test_the_operations_table_lists_exactly_the_settings():
    text = (REPO / "docs/operations.md").read_text(encoding="utf-8")
    text = text.split("## Settings", 1)[1].split("### Adding a setting", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.M)
    assert rows == [s.variable for s in SETTINGS]
