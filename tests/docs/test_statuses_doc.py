"""docs/providers/statuses.md lists exactly the adapters' word tables (issue 17, point 5)."""

from __future__ import annotations

import re

import pytest

from convdb.serve.providers import statuses

from ..support import REPO

PAGE = (REPO / "docs/providers/statuses.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    return PAGE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def two_columns(text: str) -> dict[str, str | None]:
    rows = re.findall(r"^\| `([^`]+)` \| (?:`([a-z]+)`|—) \|$", text, flags=re.M)
    return {word: status or None for word, status in rows}


@pytest.mark.parametrize(
    ("title", "table"),
    [
        ("Twilio", statuses.TWILIO),
        ("SendGrid (Event Webhook)", statuses.SENDGRID),
        ("Mailgun (event webhooks)", statuses.MAILGUN),
        ("Postmark", statuses.POSTMARK),
    ],
)
def test_each_providers_table_is_the_adapters(title, table):
    assert two_columns(section(title)) == table


def test_the_permanent_postmark_bounces_are_the_adapters():
    listed = re.findall(r"^\| `(\w+)` \|$", section("Postmark"), flags=re.M)
    assert set(listed) == statuses.POSTMARK_PERMANENT
